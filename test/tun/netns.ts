// A scratch network namespace for the TUN tests, made with iproute2, and a way
// to run a synchronous call inside it. setns moves only the calling thread and
// the call is synchronous, so nothing else runs meanwhile; what the call
// creates (the TUN interface, sockets) stays in the namespace afterwards.
import { execFileSync } from "node:child_process";
import { CLONE_NEWNET, libc, O_CLOEXEC, O_RDONLY } from "../../host/bpf/libc.js";

/** Runs `ip args...` (bounded), returning stdout; the error carries ip's stderr. */
export function ip(...args: string[]): string {
  try {
    return execFileSync("ip", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 10_000 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`ip ${args.join(" ")}: ${(e.stderr ?? "").trim() || e.message}`, { cause: err });
  }
}

export function netnsExists(name: string): boolean {
  return ip("netns", "list").split("\n").some((l) => l.split(" ")[0] === name);
}

/** Runs `fn` with this thread in network namespace `name`, then returns to where it was. */
export function withNetns<T>(name: string, fn: () => T): T {
  const c = libc();
  const self = c.open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0) throw new Error(`open /proc/thread-self/ns/net: errno ${c.errno()}`);
  try {
    const target = c.open(`/run/netns/${name}`, O_RDONLY | O_CLOEXEC);
    if (target < 0) throw new Error(`open /run/netns/${name}: errno ${c.errno()}`);
    try {
      if (c.setns(target, CLONE_NEWNET) !== 0) throw new Error(`enter network namespace ${name}: errno ${c.errno()}`);
    } finally {
      c.close(target);
    }
    try {
      return fn();
    } finally {
      if (c.setns(self, CLONE_NEWNET) !== 0) {
        // Carrying on in the wrong namespace would point every later test at the wrong interfaces.
        throw new Error(`cannot return to the original network namespace (errno ${c.errno()})`);
      }
    }
  } finally {
    c.close(self);
  }
}
