/**
 * Emits host/generated/layout.ts: enum constants with their names and texts, and
 * for every struct a record type with decode/encode over bytes. Multi-byte
 * fields are little-endian (both the Wasm and the x86-64/BPF side are); __beNN
 * fields are network order and decode to their numeric value.
 */
import type { FieldModel, LayoutModel, Primitive, StructModel } from "./c-model.js";
import { PRIMITIVE_SIZE } from "./c-model.js";
import { GENERATED_BANNER } from "./banner.js";

const pascal = (s: string) => s.split("_").map((w) => w[0].toUpperCase() + w.slice(1)).join("");
const camel = (s: string) => { const p = pascal(s); return p[0].toLowerCase() + p.slice(1); };

function tsType(f: FieldModel): string {
  if (typeof f.type !== "string") return f.count === 1 ? pascal(f.type.struct) : `${pascal(f.type.struct)}[]`;
  const wide = f.type.endsWith("64");
  if (f.count === 1) return wide ? "bigint" : "number";
  if (f.type === "u8") return "Uint8Array";
  return wide ? "bigint[]" : "number[]";
}

const GETTER: Record<Primitive, (at: string) => string> = {
  u8: (at) => `v.getUint8(${at})`, s8: (at) => `v.getInt8(${at})`,
  u16: (at) => `v.getUint16(${at}, true)`, s16: (at) => `v.getInt16(${at}, true)`,
  u32: (at) => `v.getUint32(${at}, true)`, s32: (at) => `v.getInt32(${at}, true)`,
  u64: (at) => `v.getBigUint64(${at}, true)`, s64: (at) => `v.getBigInt64(${at}, true)`,
  be16: (at) => `v.getUint16(${at}, false)`, be32: (at) => `v.getUint32(${at}, false)`, be64: (at) => `v.getBigUint64(${at}, false)`,
};
const SETTER: Record<Primitive, (at: string, val: string) => string> = {
  u8: (at, x) => `v.setUint8(${at}, ${x})`, s8: (at, x) => `v.setInt8(${at}, ${x})`,
  u16: (at, x) => `v.setUint16(${at}, ${x}, true)`, s16: (at, x) => `v.setInt16(${at}, ${x}, true)`,
  u32: (at, x) => `v.setUint32(${at}, ${x}, true)`, s32: (at, x) => `v.setInt32(${at}, ${x}, true)`,
  u64: (at, x) => `v.setBigUint64(${at}, ${x}, true)`, s64: (at, x) => `v.setBigInt64(${at}, ${x}, true)`,
  be16: (at, x) => `v.setUint16(${at}, ${x}, false)`, be32: (at, x) => `v.setUint32(${at}, ${x}, false)`, be64: (at, x) => `v.setBigUint64(${at}, ${x}, false)`,
};

function decodeExpr(f: FieldModel): string {
  if (typeof f.type !== "string") {
    const fn = `decode${pascal(f.type.struct)}`;
    if (f.count === 1) return `${fn}(bytes, off + ${f.offset})`;
    return `Array.from({ length: ${f.count} }, (_, i) => ${fn}(bytes, off + ${f.offset} + i * ${f.size / f.count}))`;
  }
  if (f.count === 1) return GETTER[f.type](String(f.offset));
  if (f.type === "u8") return `bytes.slice(off + ${f.offset}, off + ${f.offset + f.size})`;
  const el = PRIMITIVE_SIZE[f.type];
  return `Array.from({ length: ${f.count} }, (_, i) => ${GETTER[f.type](`${f.offset} + i * ${el}`)})`;
}

function encodeStmt(f: FieldModel): string {
  const val = `value.${camel(f.name)}`;
  if (typeof f.type !== "string") {
    const fn = `encode${pascal(f.type.struct)}`;
    if (f.count === 1) return `${fn}(${val}, bytes, off + ${f.offset});`;
    return `for (let i = 0; i < ${f.count}; i++) ${fn}(${val}[i], bytes, off + ${f.offset} + i * ${f.size / f.count});`;
  }
  if (f.count === 1) return `${SETTER[f.type](String(f.offset), val)};`;
  if (f.type === "u8") return `bytes.set(${val}.subarray(0, ${f.count}), off + ${f.offset});`;
  const el = PRIMITIVE_SIZE[f.type];
  return `for (let i = 0; i < ${f.count}; i++) ${SETTER[f.type](`${f.offset} + i * ${el}`, `${val}[i]`)};`;
}

function emitStruct(s: StructModel): string[] {
  const P = pascal(s.name);
  const fields = s.fields.filter((f) => !f.name.startsWith("pad"));
  const out: string[] = [];
  out.push(`/** struct ${s.name} (${s.file}): ${s.size} bytes${s.packed ? ", packed" : ""}. */`);
  out.push(`export interface ${P} {`);
  for (const f of fields) out.push(`  ${camel(f.name)}: ${tsType(f)};${f.comment ? ` // ${f.comment}` : ""}`);
  out.push("}");
  out.push(`export const ${s.name.toUpperCase()} = {`);
  out.push(`  size: ${s.size},`);
  out.push(`  align: ${s.align},`);
  out.push(`  offsets: { ${fields.map((f) => `${camel(f.name)}: ${f.offset}`).join(", ")} },`);
  out.push("} as const;");
  out.push(`export function decode${P}(bytes: Uint8Array, off = 0): ${P} {`);
  out.push(`  const v = new DataView(bytes.buffer, bytes.byteOffset + off, ${s.size});`);
  out.push(`  return {`);
  for (const f of fields) out.push(`    ${camel(f.name)}: ${decodeExpr(f)},`);
  out.push("  };");
  out.push("}");
  out.push(`export function encode${P}(value: ${P}, bytes: Uint8Array, off = 0): void {`);
  out.push(`  const v = new DataView(bytes.buffer, bytes.byteOffset + off, ${s.size});`);
  out.push(`  bytes.fill(0, off, off + ${s.size});`);
  for (const f of fields) out.push(`  ${encodeStmt(f)}`);
  out.push("}");
  return out;
}

export function emitTypeScript(model: LayoutModel): string {
  const out: string[] = [GENERATED_BANNER, "/* eslint-disable */", ""];
  for (const e of model.enums) {
    const P = pascal(e.name);
    out.push(`/** enum ${e.name} (${e.file}) */`);
    out.push(`export const ${P} = {`);
    for (const m of e.members) out.push(`  ${m.name}: ${m.value},`);
    out.push("} as const;");
    out.push(`export type ${P} = (typeof ${P})[keyof typeof ${P}];`);
    out.push(`export const ${camel(e.name)}Name: Readonly<Record<number, string>> = {`);
    for (const m of e.members) out.push(`  ${m.value}: ${JSON.stringify(m.name)},`);
    out.push("};");
    out.push(`export const ${camel(e.name)}Text: Readonly<Record<number, string>> = {`);
    for (const m of e.members) out.push(`  ${m.value}: ${JSON.stringify(m.comment ?? m.name)},`);
    out.push("};");
    out.push("");
  }
  for (const s of model.structs) { out.push(...emitStruct(s)); out.push(""); }
  return out.join("\n");
}
