/**
 * Reads the restricted C subset of bpf/include/types into a LayoutModel.
 *
 * Accepted: preprocessor lines (ignored), comments, `enum name { A = 1, B, };`,
 * `struct name { __u32 a; __u8 b[4]; struct other c; } __attribute__((packed));`
 * and `_Static_assert(sizeof(struct name) == N, "...");`. Anything else is an
 * error naming the file and line, so a header cannot silently drift out of what
 * the generators understand. Layout follows the C ABI of both targets (x86-64 and
 * BPF agree): natural alignment unless packed.
 */
import { C_TYPES, PRIMITIVE_SIZE, type EnumModel, type FieldModel, type LayoutModel, type StructModel } from "./c-model.js";

export class HeaderSyntaxError extends Error {
  readonly code = "LAYOUT_HEADER_SYNTAX";
  constructor(file: string, line: number, message: string) {
    super(`${file}:${line}: ${message}`);
  }
}

interface Token { text: string; line: number; comment?: string }

/** Splits into tokens; a trailing comment is attached to the token it follows on the same line. */
function tokenize(source: string): Token[] {
  const tokens: Token[] = [];
  let line = 1;
  let i = 0;
  let lastTokenLine = -1;
  while (i < source.length) {
    const c = source[i];
    if (c === "\n") { line++; i++; continue; }
    if (/\s/.test(c)) { i++; continue; }
    if (c === "#" ) { // preprocessor: skip to end of line
      while (i < source.length && source[i] !== "\n") i++;
      continue;
    }
    if (source.startsWith("//", i) || source.startsWith("/*", i)) {
      const block = source.startsWith("/*", i);
      const end = block ? source.indexOf("*/", i + 2) : source.indexOf("\n", i);
      const stop = end < 0 ? source.length : end;
      const text = source.slice(i + 2, stop).replace(/^\s*\*?/gm, "").replace(/\s+/g, " ").trim();
      const startLine = line;
      for (let k = i; k < stop; k++) if (source[k] === "\n") line++;
      i = block ? stop + 2 : stop;
      // A comment on the same line as the previous token describes that token
      // (enum member or field); a comment on a line of its own describes what follows.
      const prev = tokens[tokens.length - 1];
      if (prev && lastTokenLine === startLine) prev.comment = text;
      continue;
    }
    const word = /^[A-Za-z_][A-Za-z0-9_]*|^0[xX][0-9a-fA-F]+|^[0-9]+|^"(?:[^"\\]|\\.)*"|^==|^./.exec(source.slice(i));
    const text = word![0];
    tokens.push({ text, line });
    lastTokenLine = line;
    i += text.length;
  }
  return tokens;
}

function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

export function parseHeader(file: string, source: string, known: Map<string, StructModel>): LayoutModel {
  const t = tokenize(source);
  const enums: EnumModel[] = [];
  const structs: StructModel[] = [];
  let p = 0;
  const fail = (msg: string): never => { throw new HeaderSyntaxError(file, t[Math.min(p, t.length - 1)]?.line ?? 0, msg); };
  const peek = (k = 0) => t[p + k]?.text;
  const next = () => { if (p >= t.length) fail("unexpected end of file"); return t[p++]; };
  const expect = (s: string) => { const tok = next(); if (tok.text !== s) fail(`expected '${s}', found '${tok.text}'`); return tok; };
  const ident = () => { const tok = next(); if (!/^[A-Za-z_]\w*$/.test(tok.text)) fail(`expected a name, found '${tok.text}'`); return tok.text; };
  /** The comment attached to any token from index `from` up to the current position. */
  const commentSince = (from: number) => t.slice(from, p).find((tok) => tok.comment)?.comment;
  const number = () => { const tok = next(); if (!/^(0[xX][0-9a-fA-F]+|[0-9]+)$/.test(tok.text)) fail(`expected a number, found '${tok.text}'`); return Number(tok.text); };

  function skipAttribute(): boolean {
    if (peek() !== "__attribute__") return false;
    next(); expect("("); expect("(");
    const attr = ident();
    if (attr !== "packed") fail(`unsupported attribute '${attr}'`);
    expect(")"); expect(")");
    return true;
  }

  while (p < t.length) {
    const kw = peek();
    if (kw === "enum") {
      next();
      const name = ident();
      expect("{");
      const members: EnumModel["members"] = [];
      let value = 0;
      while (peek() !== "}") {
        const from = p;
        const member = ident();
        if (peek() === "=") { next(); value = number(); }
        if (peek() === ",") next(); else if (peek() !== "}") fail(`expected ',' or '}' after ${member}`);
        members.push({ name: member, value, comment: commentSince(from) });
        value++;
      }
      expect("}"); expect(";");
      enums.push({ name, file, members });
    } else if (kw === "struct") {
      next();
      const name = ident();
      expect("{");
      const raw: { name: string; type: FieldModel["type"]; count: number; comment?: string }[] = [];
      while (peek() !== "}") {
        const from = p;
        let type: FieldModel["type"];
        if (peek() === "struct") { next(); const s = ident(); if (!known.has(s)) fail(`struct ${s} used before it is declared`); type = { struct: s }; }
        else { const c = ident(); const prim = C_TYPES[c]; if (!prim) fail(`unsupported type '${c}' (use __u8..__u64, __be16/32/64 or a struct)`); type = prim; }
        const fieldName = ident();
        let count = 1;
        if (peek() === "[") { next(); count = number(); expect("]"); if (count < 1) fail(`array ${fieldName} must have at least one element`); }
        expect(";");
        raw.push({ name: fieldName, type, count, comment: commentSince(from) });
      }
      expect("}");
      const packed = skipAttribute();
      expect(";");
      let offset = 0;
      let align = 1;
      const fields: FieldModel[] = raw.map((f) => {
        const elem = typeof f.type === "string" ? PRIMITIVE_SIZE[f.type] : known.get(f.type.struct)!.size;
        const elemAlign = packed ? 1 : typeof f.type === "string" ? PRIMITIVE_SIZE[f.type] : known.get(f.type.struct)!.align;
        offset = alignUp(offset, elemAlign);
        align = Math.max(align, elemAlign);
        const field = { name: f.name, type: f.type, count: f.count, offset, size: elem * f.count, comment: f.comment };
        offset += field.size;
        return field;
      });
      const model: StructModel = { name, file, packed, size: alignUp(offset, align), align, fields };
      known.set(name, model);
      structs.push(model);
    } else if (kw === "_Static_assert") {
      next(); expect("("); expect("sizeof"); expect("("); expect("struct");
      const name = ident(); expect(")"); expect("==");
      const size = number();
      expect(",");
      if (!/^"/.test(next().text)) fail("expected a message string");
      expect(")"); expect(";");
      const s = known.get(name);
      if (!s) fail(`_Static_assert names unknown struct ${name}`);
      if (s!.size !== size) fail(`struct ${name} is ${s!.size} bytes by the layout rules, the header asserts ${size}`);
    } else {
      fail(`unexpected '${kw}' (only enum, struct and _Static_assert are allowed)`);
    }
  }
  return { enums, structs };
}

/** Parses headers in order (a struct may use structs of earlier headers). */
export function parseHeaders(files: { file: string; source: string }[]): LayoutModel {
  const known = new Map<string, StructModel>();
  const model: LayoutModel = { enums: [], structs: [] };
  for (const f of files) {
    const m = parseHeader(f.file, f.source, known);
    model.enums.push(...m.enums);
    model.structs.push(...m.structs);
  }
  return model;
}
