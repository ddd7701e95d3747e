/**
 * BTF (BPF Type Format) parser for the .BTF section of a BPF object, plus the
 * questions the host asks of it: what does a type id resolve to, how big is it,
 * what does a struct look like, how would C spell a type's name.
 *
 * Types are plain data indexed by id (id 0 is `void`). Every type reference is
 * checked against the type count while parsing, and every walk along type
 * references is depth-limited, so corrupt BTF (dangling ids, typedef loops)
 * raises "BPF_BTF_INVALID" instead of crashing or hanging.
 *
 * Layout reference: linux/include/uapi/linux/btf.h and Documentation/bpf/btf.rst.
 */
import { MembraneError } from "../../errors.js";
import { ByteReader } from "./bytes.js";

export const BTF_INVALID = "BPF_BTF_INVALID";

const BTF_MAGIC = 0xeb9f;
const BTF_HEADER_MIN = 24;
/** The same bound libbpf uses (MAX_RESOLVE_DEPTH) for modifier/typedef chains. */
const MAX_DEPTH = 32;

/** BTF_KIND_* numbers, in kernel order (index = kind number). */
const KIND_NAMES = [
  "unknown",
  "int",
  "ptr",
  "array",
  "struct",
  "union",
  "enum",
  "fwd",
  "typedef",
  "volatile",
  "const",
  "restrict",
  "func",
  "func_proto",
  "var",
  "datasec",
  "float",
  "decl_tag",
  "type_tag",
  "enum64",
] as const;

export type BtfKind = Exclude<(typeof KIND_NAMES)[number], "unknown"> | "void";

export interface BtfHeader {
  version: number;
  flags: number;
  headerLength: number;
  typeOffset: number;
  typeLength: number;
  stringOffset: number;
  stringLength: number;
}

export interface BtfVoid { kind: "void"; id: 0; name: "" }
export interface BtfInt {
  kind: "int"; id: number; name: string; size: number;
  signed: boolean; char: boolean; bool: boolean;
  /** Bit offset and width of the value inside `size` bytes (legacy bitfield encoding). */
  bitOffset: number; bits: number;
}
export interface BtfPtr { kind: "ptr"; id: number; name: string; type: number }
export interface BtfArray { kind: "array"; id: number; name: string; type: number; indexType: number; nelems: number }
export interface BtfMember {
  name: string;
  type: number;
  /** Offset of the member from the start of the struct, in bits. */
  bitOffset: number;
  /** Width of a bitfield member; 0 for an ordinary member. */
  bitfieldSize: number;
}
export interface BtfComposite { kind: "struct" | "union"; id: number; name: string; size: number; members: BtfMember[] }
export interface BtfEnumValue { name: string; value: number }
export interface BtfEnum { kind: "enum"; id: number; name: string; size: number; signed: boolean; values: BtfEnumValue[] }
export interface BtfEnum64Value { name: string; value: bigint }
export interface BtfEnum64 { kind: "enum64"; id: number; name: string; size: number; signed: boolean; values: BtfEnum64Value[] }
export interface BtfFwd { kind: "fwd"; id: number; name: string; union: boolean }
export interface BtfModifier {
  kind: "typedef" | "volatile" | "const" | "restrict" | "type_tag";
  id: number; name: string; type: number;
}
/** linkage: 0 static, 1 global, 2 extern. */
export interface BtfFunc { kind: "func"; id: number; name: string; type: number; linkage: number }
export interface BtfParam { name: string; type: number }
export interface BtfFuncProto { kind: "func_proto"; id: number; name: string; returnType: number; params: BtfParam[] }
/** linkage: 0 static, 1 global (allocated), 2 extern. */
export interface BtfVar { kind: "var"; id: number; name: string; type: number; linkage: number }
export interface BtfVarSecinfo { type: number; offset: number; size: number }
export interface BtfDatasec { kind: "datasec"; id: number; name: string; size: number; vars: BtfVarSecinfo[] }
export interface BtfFloat { kind: "float"; id: number; name: string; size: number }
/** componentIndex: -1 tags the type/var/func itself, otherwise a member or parameter index. */
export interface BtfDeclTag { kind: "decl_tag"; id: number; name: string; type: number; componentIndex: number }

export type BtfType =
  | BtfVoid | BtfInt | BtfPtr | BtfArray | BtfComposite | BtfEnum | BtfEnum64 | BtfFwd
  | BtfModifier | BtfFunc | BtfFuncProto | BtfVar | BtfDatasec | BtfFloat | BtfDeclTag;

export interface Btf {
  header: BtfHeader;
  /** types[id]; types[0] is void. */
  types: BtfType[];
  /** File offset of each type's record (typeOffsets[id]), so messages can say where. */
  typeOffsets: number[];
}

/** A struct member with its position resolved to bytes and its size and C type name. */
export interface BtfStructMember {
  name: string;
  /** Byte offset from the start of the struct (rounded down for bitfields). */
  offset: number;
  /** Size in bytes of the member's type (the storage unit, for bitfields). */
  size: number;
  type: number;
  typeName: string;
  bitOffset: number;
  bitfieldSize: number;
}

const PREFIX = "invalid BTF: ";

/** A BTF error; with a type id, the message ends with that type's file offset. */
export function btfError(message: string, btf?: Btf, id?: number): MembraneError {
  const at = btf && id !== undefined ? btf.typeOffsets[id] : undefined;
  return new MembraneError(BTF_INVALID, `${PREFIX}${message}${at === undefined ? "" : ` (at byte ${at})`}`);
}

/**
 * Parses a .BTF section. `base` is the section's file offset, so errors name
 * byte offsets in the file the section came from.
 */
export function parseBtf(section: Uint8Array, base = 0): Btf {
  const r = new ByteReader(section, BTF_INVALID, PREFIX, base);
  const magic = r.u16(0, "BTF magic");
  if (magic === 0x9feb) throw r.fail("section is big-endian; only little-endian BTF is supported", 0);
  if (magic !== BTF_MAGIC) throw r.fail(`magic is 0x${magic.toString(16)}, want 0xeb9f`, 0);
  const header: BtfHeader = {
    version: r.u8(2, "BTF version"),
    flags: r.u8(3, "BTF flags"),
    headerLength: r.u32(4, "BTF hdr_len"),
    typeOffset: r.u32(8, "BTF type_off"),
    typeLength: r.u32(12, "BTF type_len"),
    stringOffset: r.u32(16, "BTF str_off"),
    stringLength: r.u32(20, "BTF str_len"),
  };
  if (header.version !== 1) throw r.fail(`version ${header.version}, want 1`, 2);
  if (header.headerLength < BTF_HEADER_MIN) throw r.fail(`hdr_len ${header.headerLength} is shorter than ${BTF_HEADER_MIN}`, 4);
  const types = r.slice(header.headerLength + header.typeOffset, header.typeLength, "type section");
  const strings = r.slice(header.headerLength + header.stringOffset, header.stringLength, "string section");
  if (strings.length > 0 && strings.bytes[0] !== 0) throw strings.fail("string section does not start with an empty string", 0);

  const name = (offset: number, what: string): string => {
    if (offset === 0) return "";
    return strings.cstring(offset, `name of ${what}`);
  };
  const out: BtfType[] = [{ kind: "void", id: 0, name: "" }];
  const typeOffsets = [types.base];
  let at = 0;
  while (at < types.length) {
    const id = out.length;
    const start = at;
    typeOffsets.push(types.base + at);
    const what = `type #${id}`;
    const nameOff = types.u32(at, `${what} name_off`);
    const info = types.u32(at + 4, `${what} info`);
    const sizeOrType = types.u32(at + 8, `${what} size/type`);
    at += 12;
    const vlen = info & 0xffff;
    const kindNumber = (info >>> 24) & 0x1f;
    const kindFlag = (info >>> 31) === 1;
    const kind = KIND_NAMES[kindNumber];
    if (kind === undefined || kind === "unknown") throw types.fail(`${what} has unknown kind ${kindNumber}`, start + 4);
    const n = name(nameOff, what);
    const field = (rel: number, label: string): number => types.u32(at + rel, `${what} ${label}`);
    switch (kind) {
      case "int": {
        const v = field(0, "int encoding");
        const encoding = (v >>> 24) & 0xf;
        out.push({
          kind, id, name: n, size: sizeOrType,
          signed: (encoding & 1) !== 0, char: (encoding & 2) !== 0, bool: (encoding & 4) !== 0,
          bitOffset: (v >>> 16) & 0xff, bits: v & 0xff,
        });
        at += 4;
        break;
      }
      case "ptr":
      case "typedef":
      case "volatile":
      case "const":
      case "restrict":
      case "type_tag":
        out.push({ kind, id, name: n, type: sizeOrType });
        break;
      case "array":
        out.push({ kind, id, name: n, type: field(0, "array type"), indexType: field(4, "array index_type"), nelems: field(8, "array nelems") });
        at += 12;
        break;
      case "struct":
      case "union": {
        const members: BtfMember[] = [];
        for (let i = 0; i < vlen; i++, at += 12) {
          const offset = field(8, `member ${i} offset`);
          members.push({
            name: name(field(0, `member ${i} name_off`), `${what} member ${i}`),
            type: field(4, `member ${i} type`),
            // With kind_flag the offset word packs bitfield size (high 8) and bit offset (low 24).
            bitOffset: kindFlag ? offset & 0xffffff : offset,
            bitfieldSize: kindFlag ? offset >>> 24 : 0,
          });
        }
        out.push({ kind, id, name: n, size: sizeOrType, members });
        break;
      }
      case "enum": {
        const values: BtfEnumValue[] = [];
        for (let i = 0; i < vlen; i++, at += 8) {
          const valueName = name(field(0, `enum value ${i} name_off`), `${what} value ${i}`);
          const raw = types.i32(at + 4, `${what} enum value ${i}`);
          values.push({ name: valueName, value: kindFlag ? raw : raw >>> 0 });
        }
        out.push({ kind, id, name: n, size: sizeOrType, signed: kindFlag, values });
        break;
      }
      case "enum64": {
        const values: BtfEnum64Value[] = [];
        for (let i = 0; i < vlen; i++, at += 12) {
          const valueName = name(field(0, `enum64 value ${i} name_off`), `${what} value ${i}`);
          const lo = BigInt(field(4, `enum64 value ${i} val_lo32`));
          const hi = BigInt(field(8, `enum64 value ${i} val_hi32`));
          const u = (hi << 32n) | lo;
          values.push({ name: valueName, value: kindFlag ? BigInt.asIntN(64, u) : u });
        }
        out.push({ kind, id, name: n, size: sizeOrType, signed: kindFlag, values });
        break;
      }
      case "fwd":
        out.push({ kind, id, name: n, union: kindFlag });
        break;
      case "func":
        out.push({ kind, id, name: n, type: sizeOrType, linkage: vlen });
        break;
      case "func_proto": {
        const params: BtfParam[] = [];
        for (let i = 0; i < vlen; i++, at += 8) {
          params.push({ name: name(field(0, `param ${i} name_off`), `${what} param ${i}`), type: field(4, `param ${i} type`) });
        }
        out.push({ kind, id, name: n, returnType: sizeOrType, params });
        break;
      }
      case "var":
        out.push({ kind, id, name: n, type: sizeOrType, linkage: field(0, "var linkage") });
        at += 4;
        break;
      case "datasec": {
        const vars: BtfVarSecinfo[] = [];
        for (let i = 0; i < vlen; i++, at += 12) {
          vars.push({ type: field(0, `var ${i} type`), offset: field(4, `var ${i} offset`), size: field(8, `var ${i} size`) });
        }
        out.push({ kind, id, name: n, size: sizeOrType, vars });
        break;
      }
      case "float":
        out.push({ kind, id, name: n, size: sizeOrType });
        break;
      case "decl_tag":
        out.push({ kind, id, name: n, type: sizeOrType, componentIndex: types.i32(at, `${what} decl_tag component_idx`) });
        at += 4;
        break;
    }
    // A record that claimed more members than the section holds was caught by the
    // bounds-checked reads above; this catches one ending exactly past the end.
    if (at > types.length) throw types.fail(`${what} runs past the end of the type section`, start);
  }
  const btf: Btf = { header, types: out, typeOffsets };
  validateReferences(btf);
  return btf;
}

/** Every id a type points at must exist; checked once so helpers can index freely. */
function validateReferences(btf: Btf): void {
  const count = btf.types.length;
  const check = (from: BtfType, ref: number, what: string): void => {
    if (ref >= count) {
      throw btfError(`type #${from.id} (${from.kind} '${from.name}') ${what} refers to type #${ref}, but there are only ${count - 1} types`, btf, from.id);
    }
  };
  for (const t of btf.types) {
    switch (t.kind) {
      case "ptr": case "typedef": case "volatile": case "const": case "restrict": case "type_tag":
      case "func": case "var": case "decl_tag":
        check(t, t.type, "type");
        break;
      case "array":
        check(t, t.type, "element type");
        check(t, t.indexType, "index type");
        break;
      case "struct": case "union":
        t.members.forEach((m, i) => check(t, m.type, `member ${i} '${m.name}'`));
        break;
      case "func_proto":
        check(t, t.returnType, "return type");
        t.params.forEach((p, i) => check(t, p.type, `parameter ${i}`));
        break;
      case "datasec":
        t.vars.forEach((v, i) => check(t, v.type, `variable ${i}`));
        break;
      default:
        break;
    }
  }
}

/** The type with this id; throws for ids that do not exist. */
export function btfType(btf: Btf, id: number): BtfType {
  const t = btf.types[id];
  if (t === undefined) throw btfError(`type #${id} does not exist (${btf.types.length - 1} types)`);
  return t;
}

function isModifier(t: BtfType): t is BtfModifier {
  return t.kind === "typedef" || t.kind === "volatile" || t.kind === "const" || t.kind === "restrict" || t.kind === "type_tag";
}

/** Follows typedef/const/volatile/restrict/type_tag to the underlying type. */
export function resolveType(btf: Btf, id: number): BtfType {
  let t = btfType(btf, id);
  for (let depth = 0; isModifier(t); depth++) {
    if (depth >= MAX_DEPTH) throw btfError(`type #${id}: modifier chain is longer than ${MAX_DEPTH} (a loop?)`, btf, id);
    t = btfType(btf, t.type);
  }
  return t;
}

/** sizeof(type) in bytes; throws for types without a size (void, functions, forward declarations). */
export function typeSize(btf: Btf, id: number): number {
  return sizeAt(btf, id, 0);
}

function sizeAt(btf: Btf, id: number, depth: number): number {
  if (depth > MAX_DEPTH) throw btfError(`type #${id}: type chain is longer than ${MAX_DEPTH} (a loop?)`, btf, id);
  const t = btfType(btf, id);
  switch (t.kind) {
    case "int": case "struct": case "union": case "enum": case "enum64": case "float": case "datasec":
      return t.size;
    case "ptr":
      return 8; // BPF is a 64-bit target.
    case "array": {
      const size = t.nelems * sizeAt(btf, t.type, depth + 1);
      if (!Number.isSafeInteger(size)) throw btfError(`type #${id}: array size overflows`, btf, id);
      return size;
    }
    case "typedef": case "volatile": case "const": case "restrict": case "type_tag": case "var":
      return sizeAt(btf, t.type, depth + 1);
    default:
      throw btfError(`type #${id} (${t.kind} '${t.name}') has no size`, btf, id);
  }
}

/** How C would spell the type: "struct flow_key", "const volatile __u32", "__u8[6]", "void *". */
export function typeName(btf: Btf, id: number): string {
  return nameAt(btf, id, 0);
}

function nameAt(btf: Btf, id: number, depth: number): string {
  if (depth > MAX_DEPTH) throw btfError(`type #${id}: type chain is longer than ${MAX_DEPTH} (a loop?)`, btf, id);
  const t = btfType(btf, id);
  const tag = (n: string): string => n || "(anon)";
  switch (t.kind) {
    case "void": return "void";
    case "int": case "float": case "typedef": case "func": case "datasec": case "decl_tag":
      return tag(t.name);
    case "struct": case "union": return `${t.kind} ${tag(t.name)}`;
    case "enum": case "enum64": return `enum ${tag(t.name)}`;
    case "fwd": return `${t.union ? "union" : "struct"} ${tag(t.name)}`;
    case "ptr": return `${nameAt(btf, t.type, depth + 1)} *`;
    case "const": case "volatile": case "restrict": return `${t.kind} ${nameAt(btf, t.type, depth + 1)}`;
    case "type_tag": return nameAt(btf, t.type, depth + 1);
    case "var": return nameAt(btf, t.type, depth + 1);
    case "array": {
      // C writes the outermost dimension first: int a[2][3] is array(2) of array(3) of int.
      const dims: number[] = [];
      let el: BtfType = t;
      while (el.kind === "array") {
        if (dims.length > MAX_DEPTH) throw btfError(`type #${id}: array nesting is deeper than ${MAX_DEPTH} (a loop?)`, btf, id);
        dims.push(el.nelems);
        el = btfType(btf, el.type);
      }
      return `${nameAt(btf, el.id, depth + 1)}${dims.map((d) => `[${d}]`).join("")}`;
    }
    case "func_proto": {
      const params = t.params.map((p) => (p.type === 0 ? "..." : nameAt(btf, p.type, depth + 1)));
      return `${nameAt(btf, t.returnType, depth + 1)} (${params.join(", ") || "void"})`;
    }
  }
}

/** The struct or union with this name (not a forward declaration), if any. */
export function findStruct(btf: Btf, name: string): BtfComposite | undefined {
  for (const t of btf.types) {
    if ((t.kind === "struct" || t.kind === "union") && t.name === name) return t;
  }
  return undefined;
}

/** The DATASEC with this section name (".maps", ".data", ...), if any. */
export function findDatasec(btf: Btf, name: string): BtfDatasec | undefined {
  for (const t of btf.types) {
    if (t.kind === "datasec" && t.name === name) return t;
  }
  return undefined;
}

/** Members of a struct/union (by id, through typedefs) with byte offsets, sizes and type names. */
export function structMembers(btf: Btf, id: number): BtfStructMember[] {
  const t = resolveType(btf, id);
  if (t.kind !== "struct" && t.kind !== "union") throw btfError(`type #${id} has BTF kind ${t.kind}, not a struct or union`, btf, id);
  return t.members.map((m) => ({
    name: m.name,
    offset: Math.floor(m.bitOffset / 8),
    size: typeSize(btf, m.type),
    type: m.type,
    typeName: typeName(btf, m.type),
    bitOffset: m.bitOffset,
    bitfieldSize: m.bitfieldSize,
  }));
}
