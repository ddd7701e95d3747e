/**
 * Child processes in tests (a writer to SIGKILL, a second process writing at
 * once) must run membrane's real TypeScript modules, but Node 20 cannot load
 * .ts and the tests must not depend on a prior build. So: transpile the
 * entry files and every module they import relatively into a temp dir with
 * the same layout, beside a node_modules link, and spawn node on that.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import ts from "typescript";

const REPO = resolve(import.meta.dirname, "../..");

export interface ChildModules {
  /** Root of the transpiled tree: `<root>/host/...` mirrors the repository. */
  readonly root: string;
  remove(): void;
}

export function transpileForChild(entries: string[]): ChildModules {
  const root = mkdtempSync(join(tmpdir(), "membrane-child-"));
  writeFileSync(join(root, "package.json"), JSON.stringify({ type: "module" }));
  symlinkSync(join(REPO, "node_modules"), join(root, "node_modules"), "dir");
  const seen = new Set<string>();
  const queue = entries.map((e) => resolve(REPO, e));
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const source = readFileSync(file, "utf8");
    for (const m of source.matchAll(/(?:from|import)\s*\(?\s*["'](\.{1,2}\/[^"']+)\.js["']/g)) {
      queue.push(resolve(dirname(file), `${m[1]}.ts`));
    }
    const out = ts.transpileModule(source, {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: false },
      fileName: file,
    });
    const target = join(root, relative(REPO, file)).replace(/\.ts$/, ".js");
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, out.outputText);
  }
  return { root, remove: () => rmSync(root, { recursive: true, force: true }) };
}
