/**
 * The compiler a template cache runs: clang by default. An interface so that
 * the cache can be told which clang (its path and version enter the key) and
 * so tests can count invocations by wrapping it.
 */
import { execFile, execFileSync } from "node:child_process";
import { MembraneError, NotSupportedError } from "../../errors.js";
import { clangArgs } from "../../tools/build-bpf.js";

export interface TemplateCompiler {
  /** The compiler's identity in the template key: its path and full version text. */
  identity(): string;
  /** Flags it compiles with (besides the shape's -D flags), also part of the key. */
  readonly flags: readonly string[];
  /** Compiles `source` into `output` with extra `defines`. */
  compile(source: string, output: string, defines: readonly string[]): Promise<void>;
}

export class ClangCompiler implements TemplateCompiler {
  #identity: string | undefined;
  /** clangArgs without the file names: -O2 -g --target=bpf ... */
  readonly flags: readonly string[];

  constructor(readonly path = "clang") {
    this.flags = clangArgs("SOURCE", "OUTPUT").filter((a) => a !== "SOURCE" && a !== "OUTPUT" && a !== "-c" && a !== "-o");
  }

  identity(): string {
    if (this.#identity !== undefined) return this.#identity;
    try {
      this.#identity = `${this.path}\n${execFileSync(this.path, ["--version"], { encoding: "utf8" }).trim()}`;
    } catch (err) {
      throw new NotSupportedError(`compile BPF templates: ${this.path} --version failed (install clang: Debian apt-get install clang llvm libbpf-dev)`, { cause: err });
    }
    return this.#identity;
  }

  compile(source: string, output: string, defines: readonly string[]): Promise<void> {
    const args = [...defines, ...clangArgs(source, output)];
    return new Promise((resolve, reject) => {
      execFile(this.path, args, { maxBuffer: 16 * 1024 * 1024 }, (err, _stdout, stderr) => {
        if (!err) return resolve();
        const why = String(stderr).trim() || err.message;
        reject(new MembraneError("BPF_COMPILE", `compile ${source} (${this.path} ${args.join(" ")}): ${why}`, { cause: err }));
      });
    });
  }
}
