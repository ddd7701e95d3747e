// Compiling C fixtures for the ELF reader's tests. The reader is tested on what
// clang really writes, not on hand-made ELF, so the tests need clang and
// libbpf-dev; the suites pass what is missing to describeIf, so outside CI a
// missing toolchain skips with a message and in CI (CI=true) it fails.
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
