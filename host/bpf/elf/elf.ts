/**
 * ELF64 little-endian reader for relocatable BPF objects (what `clang --target=bpf -c`
 * writes). Reads the header, section headers and names, the symbol table and REL
 * relocation sections; nothing else of ELF is needed to build a spec.
 *
 * Everything is validated while reading: a truncated or corrupt file raises a
 * MembraneError "BPF_ELF_INVALID" that names the field and its byte offset,
 * before any caller sees a partially read object.
 */
import { MembraneError } from "../../errors.js";
import { ByteReader } from "./bytes.js";

export const ELF_INVALID = "BPF_ELF_INVALID";

/** e_machine of eBPF objects. */
export const EM_BPF = 247;

export const SHT_NULL = 0;
export const SHT_PROGBITS = 1;
export const SHT_SYMTAB = 2;
export const SHT_STRTAB = 3;
export const SHT_RELA = 4;
export const SHT_NOBITS = 8;
export const SHT_REL = 9;

export const SHF_WRITE = 0x1;
export const SHF_ALLOC = 0x2;
export const SHF_EXECINSTR = 0x4;

export const SHN_UNDEF = 0;
export const SHN_LORESERVE = 0xff00;
export const SHN_ABS = 0xfff1;
export const SHN_COMMON = 0xfff2;
export const SHN_XINDEX = 0xffff;

export const STB_LOCAL = 0;
export const STB_GLOBAL = 1;
export const STB_WEAK = 2;

export const STT_NOTYPE = 0;
export const STT_OBJECT = 1;
export const STT_FUNC = 2;
export const STT_SECTION = 3;
export const STT_FILE = 4;

const EHDR_SIZE = 64;
const SHDR_SIZE = 64;
const SYM_SIZE = 24;
const REL_SIZE = 16;

/** Names of known machines, so "wrong machine" says what the file is instead. */
const MACHINES: Record<number, string> = {
  3: "x86 (i386)",
  40: "ARM",
  62: "x86-64",
  183: "AArch64",
  243: "RISC-V",
  [EM_BPF]: "BPF",
};

export interface ElfHeader {
  /** e_type: 1 = relocatable, 2 = executable, 3 = shared object. */
  type: number;
  machine: number;
  version: number;
  entry: number;
  flags: number;
  sectionHeaderOffset: number;
  sectionHeaderSize: number;
  sectionCount: number;
  sectionNamesIndex: number;
}

export interface ElfSection {
  index: number;
  name: string;
  type: number;
  flags: number;
  addr: number;
  /** File offset of the contents (meaningless for SHT_NOBITS). */
  offset: number;
  size: number;
  link: number;
  info: number;
  addralign: number;
  entsize: number;
}

export interface ElfSymbol {
  index: number;
  /** The symbol's name; for STT_SECTION symbols (no name of their own) the section's name. */
  name: string;
  value: number;
  size: number;
  /** st_shndx: a section index, or SHN_UNDEF / SHN_ABS / SHN_COMMON. */
  sectionIndex: number;
  binding: number;
  type: number;
  /** st_other & 3: default, internal, hidden, protected. */
  visibility: number;
}

export interface ElfRelocation {
  /** Byte offset inside the target section. */
  offset: number;
  /** Index into the symbol table. */
  symbol: number;
  /** Machine relocation type (R_BPF_64_64 = 1, R_BPF_64_32 = 10, ...). */
  type: number;
}

export interface ElfRelocationSection {
  /** The .rel* section itself. */
  section: ElfSection;
  /** Index of the section the relocations apply to (sh_info). */
  targetIndex: number;
  entries: ElfRelocation[];
}

export interface ElfFile {
  header: ElfHeader;
  sections: ElfSection[];
  symbols: ElfSymbol[];
  relocations: ElfRelocationSection[];
  bytes: Uint8Array;
}

const PREFIX = "invalid BPF ELF object: ";

function invalid(message: string, offset: number): MembraneError {
  return new MembraneError(ELF_INVALID, `${PREFIX}${message} (at byte ${offset})`);
}

/** Reads and validates an ELF64 little-endian BPF object. */
export function readElf(bytes: Uint8Array): ElfFile {
  const r = new ByteReader(bytes, ELF_INVALID, PREFIX);
  const header = readHeader(r);
  const sections = readSections(r, header);
  const symbols = readSymbols(r, sections);
  const relocations = readRelocations(r, sections, symbols.length);
  return { header, sections, symbols, relocations, bytes };
}

/** The contents of a section; empty for SHT_NOBITS (.bss has a size but no bytes). */
export function sectionData(elf: ElfFile, section: ElfSection): Uint8Array {
  if (section.type === SHT_NOBITS) return new Uint8Array(0);
  // Bounds were checked in readSections.
  return elf.bytes.subarray(section.offset, section.offset + section.size);
}

/** File offset of a symbol's entry in the symbol table, for messages. */
export function symbolFileOffset(elf: ElfFile, symbol: ElfSymbol): number {
  const symtab = elf.sections.find((s) => s.type === SHT_SYMTAB);
  return (symtab?.offset ?? 0) + symbol.index * SYM_SIZE;
}

export function findSection(elf: ElfFile, name: string): ElfSection | undefined {
  return elf.sections.find((s) => s.name === name);
}

function readHeader(r: ByteReader): ElfHeader {
  if (r.length < 4 || r.bytes[0] !== 0x7f || r.bytes[1] !== 0x45 || r.bytes[2] !== 0x4c || r.bytes[3] !== 0x46) {
    throw invalid("not an ELF file (missing \\x7fELF magic)", 0);
  }
  if (r.length < EHDR_SIZE) throw invalid(`file is ${r.length} bytes, shorter than the 64-byte ELF64 header`, r.length);
  const cls = r.u8(4, "EI_CLASS");
  if (cls !== 2) throw invalid(`EI_CLASS is ${cls}, want 2 (ELF64); BPF objects are 64-bit`, 4);
  const data = r.u8(5, "EI_DATA");
  if (data === 2) {
    throw invalid("object is big-endian (EI_DATA=2); only little-endian BPF objects are supported (compile with --target=bpfel or bpf on a little-endian host)", 5);
  }
  if (data !== 1) throw invalid(`EI_DATA is ${data}, want 1 (little-endian)`, 5);
  const identVersion = r.u8(6, "EI_VERSION");
  if (identVersion !== 1) throw invalid(`EI_VERSION is ${identVersion}, want 1`, 6);

  const machine = r.u16(18, "e_machine");
  if (machine !== EM_BPF) {
    const what = MACHINES[machine] ?? "unknown";
    throw invalid(`e_machine is ${machine} (${what}), want ${EM_BPF} (BPF); compile with clang --target=bpf`, 18);
  }
  const header: ElfHeader = {
    type: r.u16(16, "e_type"),
    machine,
    version: r.u32(20, "e_version"),
    entry: r.u64(24, "e_entry"),
    sectionHeaderOffset: r.u64(40, "e_shoff"),
    flags: r.u32(48, "e_flags"),
    sectionHeaderSize: r.u16(58, "e_shentsize"),
    sectionCount: r.u16(60, "e_shnum"),
    sectionNamesIndex: r.u16(62, "e_shstrndx"),
  };
  if (header.sectionHeaderOffset === 0) throw invalid("no section headers (e_shoff is 0)", 40);
  if (header.sectionHeaderSize !== SHDR_SIZE) {
    throw invalid(`e_shentsize is ${header.sectionHeaderSize}, want ${SHDR_SIZE}`, 58);
  }
  // Extended numbering: with 0xff00+ sections the real counts live in section 0.
  if (header.sectionCount === 0 || header.sectionNamesIndex === SHN_XINDEX) {
    const s0 = header.sectionHeaderOffset;
    r.check(s0, SHDR_SIZE, "section header 0");
    if (header.sectionCount === 0) header.sectionCount = r.u64(s0 + 32, "section 0 sh_size (extended e_shnum)");
    if (header.sectionNamesIndex === SHN_XINDEX) header.sectionNamesIndex = r.u32(s0 + 40, "section 0 sh_link (extended e_shstrndx)");
  }
  if (header.sectionCount === 0) throw invalid("no sections (e_shnum is 0)", 60);
  const tableSize = header.sectionCount * SHDR_SIZE;
  if (header.sectionHeaderOffset + tableSize > r.length) {
    throw invalid(
      `section header table (${header.sectionCount} x ${SHDR_SIZE} bytes at ${header.sectionHeaderOffset}) runs past the end of the file (${r.length} bytes); the file is truncated`,
      header.sectionHeaderOffset,
    );
  }
  if (header.sectionNamesIndex >= header.sectionCount) {
    throw invalid(`e_shstrndx ${header.sectionNamesIndex} is not a section (${header.sectionCount} sections)`, 62);
  }
  return header;
}

function readSections(r: ByteReader, header: ElfHeader): ElfSection[] {
  const raw: Omit<ElfSection, "name">[] = [];
  const nameOffsets: number[] = [];
  for (let i = 0; i < header.sectionCount; i++) {
    const at = header.sectionHeaderOffset + i * SHDR_SIZE;
    const what = `section header ${i}`;
    nameOffsets.push(r.u32(at, `${what} sh_name`));
    const s = {
      index: i,
      type: r.u32(at + 4, `${what} sh_type`),
      flags: r.u64(at + 8, `${what} sh_flags`),
      addr: r.u64(at + 16, `${what} sh_addr`),
      offset: r.u64(at + 24, `${what} sh_offset`),
      size: r.u64(at + 32, `${what} sh_size`),
      link: r.u32(at + 40, `${what} sh_link`),
      info: r.u32(at + 44, `${what} sh_info`),
      addralign: r.u64(at + 48, `${what} sh_addralign`),
      entsize: r.u64(at + 56, `${what} sh_entsize`),
    };
    if (s.type !== SHT_NOBITS && s.type !== SHT_NULL && s.offset + s.size > r.length) {
      throw invalid(
        `${what}: contents (${s.size} bytes at ${s.offset}) run past the end of the file (${r.length} bytes); the file is truncated`,
        at + 24,
      );
    }
    raw.push(s);
  }
  const names = raw[header.sectionNamesIndex]!;
  if (names.type !== SHT_STRTAB) {
    throw invalid(`section-name table (section ${names.index}) has type ${names.type}, want SHT_STRTAB`, header.sectionHeaderOffset + names.index * SHDR_SIZE + 4);
  }
  const strtab = r.slice(names.offset, names.size, "section-name table");
  return raw.map((s, i) => ({ ...s, name: strtab.cstring(nameOffsets[i]!, `name of section ${i}`) }));
}

function readSymbols(r: ByteReader, sections: ElfSection[]): ElfSymbol[] {
  const tables = sections.filter((s) => s.type === SHT_SYMTAB);
  if (tables.length === 0) return [];
  if (tables.length > 1) throw invalid(`${tables.length} symbol tables; a relocatable object has one`, tables[1]!.offset);
  const symtab = tables[0]!;
  if (symtab.size % SYM_SIZE !== 0) {
    throw invalid(`symbol table ${symtab.name} is ${symtab.size} bytes, not a multiple of ${SYM_SIZE}`, symtab.offset);
  }
  const strings = sections[symtab.link];
  if (!strings || strings.type !== SHT_STRTAB) {
    throw invalid(`symbol table ${symtab.name} links to section ${symtab.link}, which is not a string table`, symtab.offset);
  }
  const strtab = r.slice(strings.offset, strings.size, "symbol string table");
  const symbols: ElfSymbol[] = [];
  for (let i = 0; i < symtab.size / SYM_SIZE; i++) {
    const at = symtab.offset + i * SYM_SIZE;
    const what = `symbol ${i}`;
    const nameOffset = r.u32(at, `${what} st_name`);
    const info = r.u8(at + 4, `${what} st_info`);
    const other = r.u8(at + 5, `${what} st_other`);
    const sectionIndex = r.u16(at + 6, `${what} st_shndx`);
    const type = info & 0xf;
    if (sectionIndex === SHN_XINDEX) throw invalid(`${what}: extended section index (SHN_XINDEX) is not supported`, at + 6);
    if (sectionIndex !== SHN_UNDEF && sectionIndex < SHN_LORESERVE && sectionIndex >= sections.length) {
      throw invalid(`${what}: section index ${sectionIndex} is out of range (${sections.length} sections)`, at + 6);
    }
    let name = strtab.cstring(nameOffset, `${what} name`);
    // Section symbols are unnamed; relocations against them mean "that section".
    if (type === STT_SECTION && name === "" && sectionIndex < sections.length) name = sections[sectionIndex]!.name;
    symbols.push({
      index: i,
      name,
      value: r.u64(at + 8, `${what} st_value`),
      size: r.u64(at + 16, `${what} st_size`),
      sectionIndex,
      binding: info >> 4,
      type,
      visibility: other & 3,
    });
  }
  return symbols;
}

function readRelocations(r: ByteReader, sections: ElfSection[], symbolCount: number): ElfRelocationSection[] {
  const out: ElfRelocationSection[] = [];
  for (const s of sections) {
    if (s.type === SHT_RELA) {
      // clang never emits RELA for BPF; ignoring it would silently drop relocations.
      throw invalid(`section ${s.name} has RELA relocations; BPF objects use REL`, s.offset);
    }
    if (s.type !== SHT_REL) continue;
    if (s.size % REL_SIZE !== 0) throw invalid(`relocation section ${s.name} is ${s.size} bytes, not a multiple of ${REL_SIZE}`, s.offset);
    if (s.info === 0 || s.info >= sections.length) {
      throw invalid(`relocation section ${s.name} applies to section ${s.info}, which does not exist`, s.offset);
    }
    const symtab = sections[s.link];
    if (!symtab || symtab.type !== SHT_SYMTAB) {
      throw invalid(`relocation section ${s.name} links to section ${s.link}, which is not the symbol table`, s.offset);
    }
    const target = sections[s.info]!;
    const entries: ElfRelocation[] = [];
    for (let i = 0; i < s.size / REL_SIZE; i++) {
      const at = s.offset + i * REL_SIZE;
      const what = `${s.name} entry ${i}`;
      const offset = r.u64(at, `${what} r_offset`);
      const info = r.u64big(at + 8, `${what} r_info`);
      const symbol = Number(info >> 32n);
      const type = Number(info & 0xffffffffn);
      if (symbol >= symbolCount) throw invalid(`${what}: symbol ${symbol} is out of range (${symbolCount} symbols)`, at + 8);
      if (target.type !== SHT_NOBITS && offset >= target.size) {
        throw invalid(`${what}: offset ${offset} is outside ${target.name} (${target.size} bytes)`, at);
      }
      entries.push({ offset, symbol, type });
    }
    out.push({ section: s, targetIndex: s.info, entries });
  }
  return out;
}
