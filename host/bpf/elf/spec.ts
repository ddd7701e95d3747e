/**
 * A BPF object as plain data: the "spec" of DESIGN.md ("ELF -> spec (pure data)
 * -> loaded objects (fds)"). Built from the bytes of a clang-compiled object with
 * no privileges and no file descriptors, so it can be computed anywhere (tests,
 * codegen, the CLI) and compared or printed as JSON.
 *
 * The whole object is validated before a spec is returned: a corrupt file fails
 * with "BPF_ELF_INVALID" or "BPF_BTF_INVALID", never with a partial spec.
 */
import { MembraneError, wrap } from "../../errors.js";
import { btfError, parseBtf, resolveType, structMembers, typeName, typeSize, type Btf } from "./btf.js";
import {
  ELF_INVALID, SHF_ALLOC, SHF_EXECINSTR, SHT_NOBITS, STT_OBJECT, findSection, readElf, sectionData,
  symbolFileOffset, type ElfFile, type ElfSection,
} from "./elf.js";
import { readBtfMapDefinitions, type BtfMapDefinition } from "./map-defs.js";
import { mapTypeName } from "./map-types.js";
import { isDataSection, readPrograms, type BpfProgramSpec } from "./programs.js";

export type { BpfProgramSpec, BpfRelocationKind, BpfRelocationSpec } from "./programs.js";

export type BpfPinning = "none" | "by_name";

export interface BpfMapSpec {
  name: string;
  /** BPF_MAP_TYPE_* number and its name ("hash", "lru_hash", "percpu_array", ...). */
  type: number;
  typeName: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  pinning: BpfPinning;
  numaNode?: number;
  mapExtra?: number;
  /** C names of the key/value types when declared with __type(key, T) / __type(value, T). */
  keyType?: string;
  valueType?: string;
  /** Inner map template of a map-in-map (__array(values, struct {...})). */
  inner?: BpfMapSpec;
}

export interface BpfGlobalSpec {
  name: string;
  /** ".data", ".rodata", ".bss" (or a .data.* / .rodata.* section). */
  section: string;
  offset: number;
  size: number;
  /** C name of the variable's BTF type, e.g. "const volatile __u32"; absent without BTF. */
  type?: string;
  /** Initial contents; absent for .bss, which starts zeroed. */
  initial?: Uint8Array;
}

export interface BpfStructMemberLayout {
  name: string;
  offset: number;
  size: number;
  type: string;
  /** Present only for bitfields: position and width in bits from the start of the struct. */
  bitOffset?: number;
  bitfieldSize?: number;
}

export interface BpfStructLayout {
  kind: "struct" | "union";
  size: number;
  members: BpfStructMemberLayout[];
}

export interface BpfObjectSpec {
  /** The name the caller gave (usually the file name); "" if none. */
  name: string;
  license: string;
  programs: BpfProgramSpec[];
  maps: BpfMapSpec[];
  globals: BpfGlobalSpec[];
  /** Named structs and unions from BTF, by tag name (C has one tag namespace for both). */
  structs: Record<string, BpfStructLayout>;
}

function invalid(message: string, at: number): MembraneError {
  return new MembraneError(ELF_INVALID, `invalid BPF ELF object: ${message} (at byte ${at})`);
}

/** Reads a compiled BPF object (`clang -O2 -g --target=bpf -c`) into a spec. */
export function readBpfSpec(bytes: Uint8Array, name?: string): BpfObjectSpec {
  try {
    return buildSpec(bytes, name ?? "");
  } catch (err) {
    throw wrap(name ? `read BPF object ${name}` : "read BPF object", err);
  }
}

function buildSpec(bytes: Uint8Array, name: string): BpfObjectSpec {
  const elf = readElf(bytes);
  const legacy = findSection(elf, "maps");
  if (legacy) {
    throw invalid(`legacy "maps" section (struct bpf_map_def) is not supported; declare maps with __uint/__type in SEC(".maps")`, legacy.offset);
  }
  const btfSection = findSection(elf, ".BTF");
  const btf = btfSection ? parseBtf(sectionData(elf, btfSection), btfSection.offset) : undefined;
  const globals = readGlobals(elf, btf);
  const globalAt = (sectionIndex: number, offset: number): string | undefined => {
    const section = elf.sections[sectionIndex]!.name;
    return globals.find((g) => g.section === section && offset >= g.offset && offset < g.offset + Math.max(g.size, 1))?.name;
  };
  return {
    name,
    license: readLicense(elf),
    programs: readPrograms(elf, globalAt),
    maps: readMaps(elf, btf),
    globals,
    structs: btf ? readStructs(btf) : {},
  };
}

function readLicense(elf: ElfFile): string {
  const s = findSection(elf, "license");
  if (!s) return "";
  const data = sectionData(elf, s);
  const end = data.indexOf(0);
  if (end < 0) throw invalid("license section is not NUL-terminated", s.offset);
  return new TextDecoder().decode(data.subarray(0, end));
}

function readMaps(elf: ElfFile, btf: Btf | undefined): BpfMapSpec[] {
  const section = findSection(elf, ".maps");
  if (!section) return [];
  const symbols = elf.symbols.filter((s) => s.sectionIndex === section.index && s.type === STT_OBJECT);
  if (!btf) {
    if (symbols.length === 0) return [];
    throw invalid(`.maps holds ${symbols.length} map(s) but the object has no .BTF section; compile with -g`, section.offset);
  }
  const defs = readBtfMapDefinitions(btf);
  for (const s of symbols) {
    if (!defs.some((d) => d.name === s.name)) throw invalid(`map symbol '${s.name}' in .maps has no BTF definition`, symbolFileOffset(elf, s));
  }
  return defs.map((d) => toMapSpec(btf, d));
}

function toMapSpec(btf: Btf, d: BtfMapDefinition): BpfMapSpec {
  if (d.type === undefined) throw btfError(`map '${d.name}': no type (add __uint(type, BPF_MAP_TYPE_...))`, btf, d.typeId);
  const pinning = d.pinning ?? 0;
  if (pinning !== 0 && pinning !== 1) {
    throw btfError(`map '${d.name}': pinning ${pinning} is not LIBBPF_PIN_NONE (0) or LIBBPF_PIN_BY_NAME (1)`, btf, d.typeId);
  }
  const spec: BpfMapSpec = {
    name: d.name,
    type: d.type,
    typeName: mapTypeName(d.type),
    keySize: d.keySize ?? 0,
    valueSize: d.valueSize ?? 0,
    maxEntries: d.maxEntries ?? 0,
    flags: d.flags ?? 0,
    pinning: pinning === 1 ? "by_name" : "none",
  };
  // Optional fields are left out rather than set to undefined, so specs compare and print cleanly.
  if (d.numaNode !== undefined) spec.numaNode = d.numaNode;
  if (d.mapExtra !== undefined) spec.mapExtra = d.mapExtra;
  if (d.keyType !== undefined) spec.keyType = typeName(btf, d.keyType);
  if (d.valueType !== undefined) spec.valueType = typeName(btf, d.valueType);
  if (d.inner !== undefined) spec.inner = toMapSpec(btf, d.inner);
  return spec;
}

/**
 * Global variables come from ELF symbols, not BTF DATASECs: in an unlinked
 * object clang leaves DATASEC sizes and offsets 0 for libbpf to fix up, while
 * st_value/st_size are already right. BTF contributes only the type name.
 */
function readGlobals(elf: ElfFile, btf: Btf | undefined): BpfGlobalSpec[] {
  const sections = elf.sections.filter(
    (s) => isDataSection(s) && (s.flags & SHF_ALLOC) !== 0 && (s.flags & SHF_EXECINSTR) === 0,
  );
  const out: BpfGlobalSpec[] = [];
  for (const section of sections) {
    const types = btf ? varTypes(btf, section) : new Map<string, number>();
    const data = sectionData(elf, section);
    const symbols = elf.symbols
      .filter((s) => s.sectionIndex === section.index && s.type === STT_OBJECT)
      .sort((a, b) => a.value - b.value);
    for (const sym of symbols) {
      if (sym.value + sym.size > section.size) {
        throw invalid(`variable '${sym.name}' (${sym.size} bytes at ${sym.value}) does not fit ${section.name} (${section.size} bytes)`, symbolFileOffset(elf, sym));
      }
      const g: BpfGlobalSpec = { name: sym.name, section: section.name, offset: sym.value, size: sym.size };
      const typeId = types.get(sym.name);
      if (btf && typeId !== undefined) g.type = typeName(btf, typeId);
      if (section.type !== SHT_NOBITS) g.initial = data.slice(sym.value, sym.value + sym.size);
      out.push(g);
    }
  }
  return out;
}

/** Variable name -> BTF type id, from the DATASEC named like the section. */
function varTypes(btf: Btf, section: ElfSection): Map<string, number> {
  const out = new Map<string, number>();
  for (const t of btf.types) {
    if (t.kind !== "datasec" || t.name !== section.name) continue;
    for (const v of t.vars) {
      const variable = resolveType(btf, v.type);
      if (variable.kind === "var") out.set(variable.name, variable.type);
    }
  }
  return out;
}

function readStructs(btf: Btf): Record<string, BpfStructLayout> {
  // No prototype: a struct may legally be called "constructor" or "__proto__".
  const out: Record<string, BpfStructLayout> = Object.create(null);
  for (const t of btf.types) {
    if ((t.kind !== "struct" && t.kind !== "union") || t.name === "" || Object.hasOwn(out, t.name)) continue;
    out[t.name] = {
      kind: t.kind,
      size: typeSize(btf, t.id),
      members: structMembers(btf, t.id).map((m) => {
        const layout: BpfStructMemberLayout = { name: m.name, offset: m.offset, size: m.size, type: m.typeName };
        if (m.bitfieldSize > 0) {
          layout.bitOffset = m.bitOffset;
          layout.bitfieldSize = m.bitfieldSize;
        }
        return layout;
      }),
    };
  }
  return out;
}

/** The layout of one struct by name, or undefined; a convenience over spec.structs. */
export function structLayout(spec: BpfObjectSpec, name: string): BpfStructLayout | undefined {
  return Object.hasOwn(spec.structs, name) ? spec.structs[name] : undefined;
}

/** JSON text of a spec; Uint8Array fields (instructions, initial values) become lowercase hex strings. */
export function specToJson(spec: BpfObjectSpec, space?: number): string {
  return JSON.stringify(spec, (_key, value: unknown) => (value instanceof Uint8Array ? toHex(value) : value), space);
}

function toHex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}
