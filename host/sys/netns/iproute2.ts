/**
 * iproute2 (`ip`, `tc`) as bounded synchronous calls. Every call has a
 * timeout and a failure carries the command and its stderr, so a broken
 * setup step names itself.
 */
import { execFileSync } from "node:child_process";

const TIMEOUT_MS = 10_000;

/** Runs an iproute2 command (bounded), returning stdout; the error carries its stderr. */
function iproute2(cmd: "ip" | "tc", args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: TIMEOUT_MS });
  } catch (err) {
    const e = err as { stderr?: string; signal?: string | null; message: string };
    const why = e.signal ? `killed by ${e.signal}` : (e.stderr ?? "").trim() || e.message;
    throw new Error(`${cmd} ${args.join(" ")}: ${why}`, { cause: err });
  }
}

export const ip = (...args: string[]): string => iproute2("ip", args);
export const tc = (...args: string[]): string => iproute2("tc", args);

/** Why iproute2 cannot be used here (not installed), or undefined. */
export function iproute2Unavailable(): string | undefined {
  for (const cmd of ["ip", "tc"] as const) {
    try {
      execFileSync(cmd, ["-V"], { stdio: "pipe", timeout: 5_000 });
    } catch {
      return `iproute2 is not installed (${cmd}; apt-get install iproute2)`;
    }
  }
  return undefined;
}

/** The named network namespaces (/run/netns). */
export function netnsList(): string[] {
  return ip("netns", "list").split("\n").map((l) => l.split(" ")[0]!).filter(Boolean);
}

export function netnsExists(name: string): boolean {
  return netnsList().includes(name);
}

/** Interface names in namespace `ns` (the caller's namespace when undefined). */
export function linkNames(ns?: string): string[] {
  const out = ns === undefined ? ip("-o", "link", "show") : ip("-n", ns, "-o", "link", "show");
  // "3: lxc-pod1@if2: <...>" -> "lxc-pod1"
  return out.split("\n").map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1]).filter((n): n is string => n !== undefined);
}

export function linkExists(dev: string, ns?: string): boolean {
  return linkNames(ns).includes(dev);
}

/** Pids of the processes in namespace `ns`. */
export function netnsPids(ns: string): number[] {
  return ip("netns", "pids", ns).split("\n").filter(Boolean).map(Number);
}
