/**
 * What the template tests need: root and bpf(2) for loading, clang for
 * compiling. describeIf (test/support/describe-if.ts) skips outside CI
 * saying what is missing; in CI a missing piece fails.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ClangCompiler, type TemplateCompiler } from "../../host/kernel/templates/compiler.js";

/** Why the template tests cannot run here (for describeIf), or undefined. */
export function templateUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "template tests need root (bpf(2), BPF_PROG_TEST_RUN)";
  if (spawnSync("clang", ["--version"], { stdio: "ignore" }).status !== 0) return "template tests need clang (apt-get install clang llvm libbpf-dev)";
  return undefined;
}

/** A templates dir of its own (0700 is the cache's job: it creates the dir inside). */
export function tempTemplatesDir(): string {
  return join(mkdtempSync(join(tmpdir(), "membrane-templates-")), "templates");
}

/** clang, counting how often it really runs. */
export class CountingCompiler implements TemplateCompiler {
  readonly inner = new ClangCompiler();
  readonly flags = this.inner.flags;
  runs = 0;
  identity(): string {
    return this.inner.identity();
  }
  async compile(source: string, output: string, defines: readonly string[]): Promise<void> {
    this.runs++;
    await this.inner.compile(source, output, defines);
  }
}
