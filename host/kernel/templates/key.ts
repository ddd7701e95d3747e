/**
 * A template's key: sha256 over everything that decides the compiled bytes —
 * every file of the datapath sources (bpf/**, by relative path and content),
 * the compiler's path and version, its flags, the program and the shape's -D
 * flags. Any change to one of them is a new key, hence a new template; an old
 * key is never overwritten with different bytes.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { InvalidInputError } from "../../errors.js";
import type { TemplateCompiler } from "./compiler.js";
import { shapeDefines, type TemplateShape } from "./shape.js";

/**
 * Bumped when the key's recipe or the cache's layout changes. v2: a template
 * is split into per-endpoint programs and node-wide stages that share one
 * handover layout (bpf/lib/lxc_calls.h), so an instance only ever tail-calls
 * stages of its own key (its prog array is pinned under the key's name).
 */
const KEY_VERSION = "membrane-bpf-template-v2";

export interface SourceDigest {
  path: string;
  sha256: string;
}

export interface TemplateKey {
  /** Hex sha256; the template's directory name. */
  key: string;
  program: string;
  sources: SourceDigest[];
  compiler: string;
  flags: string[];
  defines: string[];
}

const sha256 = (data: string | Uint8Array) => createHash("sha256").update(data).digest("hex");

/** Every regular file under `dir`, sorted by path, with its digest. */
export function digestSources(dir: string): SourceDigest[] {
  const out: SourceDigest[] = [];
  const walk = (d: string) => {
    let entries;
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch (err) {
      throw new InvalidInputError(`read the datapath sources in ${d}: ${(err as Error).message}`, { cause: err });
    }
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) out.push({ path: relative(dir, p), sha256: sha256(readFileSync(p)) });
    }
  };
  walk(dir);
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

export function templateKey(sourceDir: string, program: string, compiler: TemplateCompiler, shape: TemplateShape): TemplateKey {
  const sources = digestSources(sourceDir);
  if (!sources.some((s) => s.path === `${program}.c`)) {
    throw new InvalidInputError(`BPF template: no program ${program}.c in ${sourceDir} (programs: ${sources.filter((s) => /^[^/]+\.c$/.test(s.path)).map((s) => s.path.slice(0, -2)).join(", ")})`);
  }
  const defines = shapeDefines(shape);
  const flags = [...compiler.flags];
  const id = compiler.identity();
  const h = createHash("sha256");
  const field = (name: string, value: string) => h.update(`${name}=${value.length}:${value}\n`);
  field("version", KEY_VERSION);
  field("program", program);
  for (const s of sources) field(`source ${s.path}`, s.sha256);
  field("compiler", id);
  for (const f of flags) field("flag", f);
  for (const d of defines) field("define", d);
  return { key: h.digest("hex"), program, sources, compiler: id, flags, defines };
}
