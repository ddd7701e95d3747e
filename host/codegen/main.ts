/**
 * `npm run gen`: regenerates the layout files from bpf/include/types. With
 * --check, writes nothing and exits 1 when a committed file differs.
 */
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseHeaders } from "./parse-c.js";
import { emitAssemblyScript } from "./emit-as.js";
import { emitTypeScript } from "./emit-ts.js";

/** Header order matters: a header may only use structs of headers before it. */
export const HEADER_ORDER = ["common.h", "ct.h", "frag.h", "config.h", "metrics.h", "batch.h", "policy.h", "lb.h", "nat.h", "monitor.h"];

export function generateLayouts(root: string): { path: string; content: string }[] {
  const dir = join(root, "bpf/include/types");
  const present = readdirSync(dir).filter((f) => f.endsWith(".h"));
  const unlisted = present.filter((f) => !HEADER_ORDER.includes(f));
  if (unlisted.length) throw new Error(`generate layouts: add ${unlisted.join(", ")} to HEADER_ORDER in host/codegen/main.ts`);
  const model = parseHeaders(HEADER_ORDER.map((f) => ({ file: f, source: readFileSync(join(dir, f), "utf8") })));
  return [
    { path: join(root, "assembly/generated/layout.ts"), content: emitAssemblyScript(model) },
    { path: join(root, "host/generated/layout.ts"), content: emitTypeScript(model) },
  ];
}

function main(): void {
  const check = process.argv.includes("--check");
  let stale = 0;
  for (const { path, content } of generateLayouts(process.cwd())) {
    let current = "";
    try { current = readFileSync(path, "utf8"); } catch { /* missing counts as stale */ }
    if (current === content) continue;
    stale++;
    if (check) console.error(`stale: ${path}`);
    else { writeFileSync(path, content); console.log(`wrote ${path}`); }
  }
  if (check && stale) process.exit(1);
}

if (import.meta.url === `file://${process.argv[1]}`) main();
