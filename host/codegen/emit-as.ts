/** Emits assembly/generated/layout.ts: sizes, field offsets and enum values as inlined constants. */
import type { LayoutModel } from "./c-model.js";
import { GENERATED_BANNER } from "./banner.js";

const upper = (s: string) => s.toUpperCase();

export function emitAssemblyScript(model: LayoutModel): string {
  const out: string[] = [GENERATED_BANNER, ""];
  for (const e of model.enums) {
    out.push(`// enum ${e.name} (${e.file})`);
    for (const m of e.members) out.push(`export const ${m.name}: i32 = ${m.value};${m.comment ? ` // ${m.comment}` : ""}`);
    out.push("");
  }
  for (const s of model.structs) {
    const S = upper(s.name);
    out.push(`// struct ${s.name} (${s.file}): ${s.size} bytes${s.packed ? ", packed" : ""}`);
    out.push(`export const ${S}_SIZE: i32 = ${s.size};`);
    for (const f of s.fields) {
      if (f.name.startsWith("pad")) continue;
      out.push(`export const ${S}_${upper(f.name)}: i32 = ${f.offset};`);
    }
    out.push("");
  }
  return out.join("\n");
}
