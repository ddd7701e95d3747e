// Compiling C fixtures for the ELF reader's tests. The reader is tested on what
// clang really writes, not on hand-made ELF, so the tests need clang and
// libbpf-dev. Outside CI a missing toolchain skips with a message; in CI
// (CI=true) it must fail, because a missing install step is a bug there.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

export const FIXTURES = join(import.meta.dirname, "../../fixtures/bpf/elf");

function hasCommand(cmd: string): boolean {
  try {
    execFileSync(cmd, ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** Why BPF fixtures cannot be compiled here, or undefined if they can. */
export function missingBpfToolchain(): string | undefined {
  if (!hasCommand("clang")) return "clang is not installed (apt-get install clang)";
  if (!existsSync("/usr/include/bpf/bpf_helpers.h")) return "libbpf-dev is not installed (<bpf/bpf_helpers.h> missing)";
  return undefined;
}

/** Why a host object cannot be compiled here, or undefined if it can. */
export function missingHostCompiler(): string | undefined {
  return hasCommand("cc") ? undefined : "no host C compiler (cc)";
}

/**
 * Decides whether a suite needing `missing` tools may skip. Prints the reason
 * when skipping; in CI returns false so the suite runs and fails loudly.
 */
export function shouldSkip(suite: string, missing: string | undefined): boolean {
  if (missing === undefined) return false;
  if (process.env.CI === "true") return false;
  console.warn(`skipping ${suite}: ${missing}`);
  return true;
}

/** For beforeAll in CI: fail with what is missing instead of a bare spawn ENOENT. */
export function requireTools(suite: string, missing: string | undefined): void {
  if (missing !== undefined) throw new Error(`${suite} cannot run: ${missing}; CI=true, so this fails instead of skipping`);
}

/** clang -O2 -g --target=bpf -c; returns the object's bytes. */
export function compileBpf(source: string, out: string, extra: string[] = []): Uint8Array {
  execFileSync(
    "clang",
    ["-O2", "-g", "--target=bpf", "-I/usr/include/x86_64-linux-gnu", "-Wall", "-Werror", ...extra, "-c", source, "-o", out],
    { stdio: "pipe" },
  );
  return new Uint8Array(readFileSync(out));
}

/** The host compiler's object for the same source: a valid ELF for the wrong machine. */
export function compileHost(source: string, out: string): Uint8Array {
  execFileSync("cc", ["-O2", "-c", "-x", "c", source, "-o", out], { stdio: "pipe" });
  return new Uint8Array(readFileSync(out));
}
