/**
 * `npm run build:bpf`: compiles the kernel datapath (bpf/*.c) into build/bpf/*.o
 * with clang. Without clang it says what to install and exits 0 (the Wasm
 * datapath does not need it), except in CI, where a missing compiler is an
 * install step that failed.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { packageRoot } from "../package-root.js";

export const BPF_PROGRAMS = ["bpf_lxc", "bpf_host", "bpf_test", "tun_steering"] as const;

export function bpfObjectPath(name: (typeof BPF_PROGRAMS)[number]): string {
  return join(packageRoot(), "build/bpf", `${name}.o`);
}

/** clang flags: -g for BTF (map definitions, layouts), the multiarch include dir for <asm/types.h>. */
export function clangArgs(source: string, output: string): string[] {
  return ["-O2", "-g", "--target=bpf", "-Wall", "-Werror", "-I/usr/include/x86_64-linux-gnu", "-c", source, "-o", output];
}

function main(): void {
  const root = packageRoot();
  if (spawnSync("clang", ["--version"], { stdio: "ignore" }).status !== 0) {
    const msg = "build:bpf: clang not found, the kernel datapath was not built (Debian: apt-get install clang llvm libbpf-dev)";
    if (process.env.CI === "true") {
      console.error(msg);
      process.exit(1);
    }
    console.warn(msg);
    return;
  }
  mkdirSync(join(root, "build/bpf"), { recursive: true });
  const sources = readdirSync(join(root, "bpf")).filter((f) => f.endsWith(".c"));
  for (const src of sources) {
    const out = join(root, "build/bpf", src.replace(/\.c$/, ".o"));
    execFileSync("clang", clangArgs(join(root, "bpf", src), out), { stdio: "inherit" });
  }
  console.log(`build:bpf: compiled ${sources.length} programs into build/bpf`);
}

if (import.meta.url === `file://${process.argv[1]}`) main();
