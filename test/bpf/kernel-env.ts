// What the kernel-object tests need, and the skip-or-fail rule around it:
// root, libbpf.so.1 (through koffi), a working bpf(2), clang with libbpf-dev
// for the fixtures, and iproute2 for the tc checks. Outside CI a missing piece
// skips the suite with a message; with CI=true the suite fails instead,
// because there a missing install step is a bug.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { probeBpf } from "../../host/bpf/features.js";
import { libbpf } from "../../host/bpf/libbpf.js";

export const LOADER_FIXTURES = join(import.meta.dirname, "../fixtures/bpf/loader");

export function hasCommand(cmd: string, args = ["--version"]): boolean {
  try {
    execFileSync(cmd, args, { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** Why libbpf cannot be used here, or undefined. */
export function missingLibbpf(): string | undefined {
  try {
    libbpf();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/** Why BPF programs cannot be compiled and loaded here, or undefined. */
export function missingKernelBpf(): string | undefined {
  if (process.getuid?.() !== 0) return "not running as root (loading BPF programs needs root)";
  if (!hasCommand("clang")) return "clang is not installed (apt-get install clang)";
  if (!existsSync("/usr/include/bpf/bpf_helpers.h")) return "libbpf-dev is not installed (<bpf/bpf_helpers.h> missing)";
  const lib = missingLibbpf();
  if (lib) return lib;
  try {
    probeBpf(["bpfSyscall", "testRun"]);
  } catch (err) {
    return (err as Error).message;
  }
  return undefined;
}

/** Also needs iproute2 (ip, tc) and tc clsact support. */
export function missingTc(): string | undefined {
  const base = missingKernelBpf();
  if (base) return base;
  if (!hasCommand("ip", ["-V"]) || !hasCommand("tc", ["-V"])) return "iproute2 is not installed (apt-get install iproute2)";
  try {
    probeBpf(["clsact"]);
  } catch (err) {
    return (err as Error).message;
  }
  return undefined;
}


/**
 * clang -O2 -g --target=bpf of a fixture under test/fixtures/bpf/loader into
 * `outDir` (the caller's temp dir, removed in its afterAll); returns the ELF bytes.
 */
export function compileFixture(file: string, outDir: string): Uint8Array {
  const out = join(outDir, file.replace(/\.c$/, ".o"));
  execFileSync(
    "clang",
    ["-O2", "-g", "--target=bpf", "-I/usr/include/x86_64-linux-gnu", "-Wall", "-Werror", "-c", join(LOADER_FIXTURES, file), "-o", out],
    { stdio: "pipe" },
  );
  return new Uint8Array(readFileSync(out));
}

/** Runs a command, returning stdout (throws with stderr on failure). */
export function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** Runs a cleanup command, ignoring failures (the thing may already be gone). */
export function runQuietly(cmd: string, args: string[]): void {
  try {
    execFileSync(cmd, args, { stdio: "ignore" });
  } catch {
    // already gone
  }
}

export { describeIf } from "../support/describe-if.js";
