/**
 * Programs of a BPF object: one per function symbol in an executable section,
 * with its instructions and its relocations resolved to what they point at
 * (a map, a global variable, another function).
 *
 * The rules mirror libbpf's bpf_program__record_reloc so that what this reader
 * accepts is what libbpf will load: map and data references sit on a 16-byte
 * ld_imm64, calls on a BPF_PSEUDO_CALL, and the byte offset of the target is
 * st_value plus the instruction's immediate (section symbols carry the offset
 * in the immediate, named symbols in st_value).
 */
import { MembraneError } from "../../errors.js";
import {
  ELF_INVALID, SHF_EXECINSTR, SHN_UNDEF, SHT_PROGBITS, STB_GLOBAL, STB_WEAK, STT_FUNC, STT_OBJECT,
  sectionData, symbolFileOffset, type ElfFile, type ElfSection, type ElfSymbol,
} from "./elf.js";

/** Size of one BPF instruction slot; ld_imm64 takes two. */
export const BPF_INSN_SIZE = 8;

const BPF_LD_IMM64 = 0x18; // BPF_LD | BPF_IMM | BPF_DW
const BPF_CALL = 0x85; // BPF_JMP | BPF_CALL
const BPF_PSEUDO_CALL = 1;
const BPF_PSEUDO_FUNC = 4;
const R_BPF_NONE = 0;

/**
 * What a relocation points at:
 * - "map": a map variable in .maps
 * - "data": a global variable in .data/.rodata/.bss (or a .data.*, .rodata.* section)
 * - "call": a bpf-to-bpf call to another function
 * - "func": the address of a function (ld_imm64 of a callback, e.g. for bpf_loop)
 * - "extern": an undefined symbol (__kconfig / __ksym externs)
 */
export type BpfRelocationKind = "map" | "data" | "call" | "func" | "extern";

export interface BpfRelocationSpec {
  /** Index of the instruction slot within the program (8-byte units). */
  instruction: number;
  kind: BpfRelocationKind;
  /** Map name, variable name, callee name or extern name. Anonymous data (string literals) names its section. */
  symbol: string;
  /** Section of the target ("" for externs). */
  section: string;
  /** Byte offset of the target within its section. */
  offset: number;
}

export interface BpfProgramSpec {
  name: string;
  /** ELF section, i.e. the SEC() name: "tc", "xdp", "tc/ingress"; ".text" for subprograms. */
  section: string;
  /** Functions in .text are subprograms (called, not attached), as libbpf treats them. */
  subprogram: boolean;
  /** STB_GLOBAL/STB_WEAK: the verifier checks global functions on their own. */
  global: boolean;
  /** Number of 8-byte instruction slots. */
  instructionCount: number;
  /** Byte offset and size of the function within its section. */
  offset: number;
  size: number;
  instructions: Uint8Array;
  relocations: BpfRelocationSpec[];
}

/** Answers "which named variable covers this byte of that data section?" for data relocations. */
export type GlobalLookup = (sectionIndex: number, offset: number) => string | undefined;

const DATA_SECTION = /^\.(data|rodata|bss)(\..*)?$/;

/** True for sections libbpf turns into global-variable maps. */
export function isDataSection(s: ElfSection): boolean {
  return DATA_SECTION.test(s.name);
}

export function isExecutableSection(s: ElfSection): boolean {
  return s.type === SHT_PROGBITS && (s.flags & SHF_EXECINSTR) !== 0;
}

function invalid(message: string, at: number): MembraneError {
  return new MembraneError(ELF_INVALID, `invalid BPF ELF object: ${message} (at byte ${at})`);
}

/** A relocation entry named for messages, with its file offset. */
interface Where {
  what: string;
  at: number;
}

interface Located {
  spec: BpfProgramSpec;
  sectionIndex: number;
}

export function readPrograms(elf: ElfFile, globalAt: GlobalLookup): BpfProgramSpec[] {
  const located: Located[] = [];
  for (const section of elf.sections) {
    if (!isExecutableSection(section)) continue;
    located.push(...functionsOf(elf, section));
  }
  for (const rel of elf.relocations) {
    const target = elf.sections[rel.targetIndex]!;
    if (!isExecutableSection(target)) continue; // .rel.BTF, .rel.debug_*: not the loader's business
    const progs = located.filter((p) => p.sectionIndex === target.index);
    rel.entries.forEach((entry, i) => {
      if (entry.type === R_BPF_NONE) return;
      const where: Where = { what: `${rel.section.name} entry ${i} (offset ${entry.offset} in ${target.name})`, at: rel.section.offset + i * 16 };
      const p = progs.find((q) => entry.offset >= q.spec.offset && entry.offset < q.spec.offset + q.spec.size);
      if (!p) throw invalid(`${where.what} is not inside any function`, where.at);
      p.spec.relocations.push(resolveRelocation(elf, p.spec, entry.offset, elf.symbols[entry.symbol]!, globalAt, where));
    });
  }
  for (const p of located) p.spec.relocations.sort((a, b) => a.instruction - b.instruction);
  return located.map((p) => p.spec);
}

function functionsOf(elf: ElfFile, section: ElfSection): Located[] {
  const funcs = elf.symbols
    .filter((s) => s.type === STT_FUNC && s.sectionIndex === section.index)
    .sort((a, b) => a.value - b.value);
  const data = sectionData(elf, section);
  return funcs.map((sym, i) => {
    // Hand-written assembly may leave st_size 0: the function then runs to the next one.
    const end = sym.size > 0 ? sym.value + sym.size : (funcs[i + 1]?.value ?? section.size);
    const size = end - sym.value;
    const what = `function ${sym.name} in ${section.name}`;
    if (sym.value % BPF_INSN_SIZE !== 0 || size % BPF_INSN_SIZE !== 0) {
      throw invalid(`${what}: offset ${sym.value} or size ${size} is not a multiple of ${BPF_INSN_SIZE}`, symbolFileOffset(elf, sym));
    }
    if (end > section.size || size <= 0) {
      throw invalid(`${what}: bytes ${sym.value}..${end} do not fit the section (${section.size} bytes)`, symbolFileOffset(elf, sym));
    }
    return {
      sectionIndex: section.index,
      spec: {
        name: sym.name,
        section: section.name,
        subprogram: section.name === ".text",
        global: sym.binding === STB_GLOBAL || sym.binding === STB_WEAK,
        instructionCount: size / BPF_INSN_SIZE,
        offset: sym.value,
        size,
        instructions: data.slice(sym.value, end),
        relocations: [],
      },
    };
  });
}

function resolveRelocation(
  elf: ElfFile,
  prog: BpfProgramSpec,
  offset: number,
  sym: ElfSymbol,
  globalAt: GlobalLookup,
  where: Where,
): BpfRelocationSpec {
  const rel = offset - prog.offset;
  if (rel % BPF_INSN_SIZE !== 0) throw invalid(`${where.what} is not on an instruction boundary`, where.at);
  const instruction = rel / BPF_INSN_SIZE;
  const code = prog.instructions[rel]!;
  const srcReg = prog.instructions[rel + 1]! >> 4;
  const imm = new DataView(prog.instructions.buffer, prog.instructions.byteOffset + rel + 4, 4).getInt32(0, true);
  const isLdImm64 = code === BPF_LD_IMM64 && rel + 2 * BPF_INSN_SIZE <= prog.size;
  const needLdImm64 = (kind: string): void => {
    if (!isLdImm64) throw invalid(`${where.what}: a ${kind} reference must be on a 16-byte ld_imm64, found opcode 0x${code.toString(16)}`, where.at);
  };

  if (sym.sectionIndex === SHN_UNDEF) {
    return { instruction, kind: "extern", symbol: sym.name, section: "", offset: 0 };
  }
  const target = elf.sections[sym.sectionIndex];
  if (!target) throw invalid(`${where.what}: symbol '${sym.name}' is in special section 0x${sym.sectionIndex.toString(16)}`, where.at);

  if (target.name === ".maps") {
    needLdImm64("map");
    const mapOffset = sym.type === STT_OBJECT ? sym.value : sym.value + imm;
    const map = elf.symbols.find((s) => s.sectionIndex === target.index && s.type === STT_OBJECT && s.value === mapOffset);
    if (!map) throw invalid(`${where.what}: no map at offset ${mapOffset} of .maps`, where.at);
    return { instruction, kind: "map", symbol: map.name, section: target.name, offset: mapOffset };
  }
  if (isExecutableSection(target)) {
    if (code === BPF_CALL) {
      if (srcReg !== BPF_PSEUDO_CALL) throw invalid(`${where.what}: call relocation on a call that is not a bpf-to-bpf call (src_reg ${srcReg})`, where.at);
      // The call's target slot is relative to the slot after the call, from the symbol.
      const calleeOffset = sym.value + (imm + 1) * BPF_INSN_SIZE;
      return { instruction, kind: "call", symbol: functionAt(elf, target, calleeOffset, where), section: target.name, offset: calleeOffset };
    }
    needLdImm64("function address");
    if (srcReg !== BPF_PSEUDO_FUNC && srcReg !== 0) throw invalid(`${where.what}: function address load has src_reg ${srcReg}`, where.at);
    const funcOffset = sym.value + imm;
    return { instruction, kind: "func", symbol: functionAt(elf, target, funcOffset, where), section: target.name, offset: funcOffset };
  }
  if (isDataSection(target)) {
    needLdImm64("global variable");
    const dataOffset = sym.value + imm;
    if (dataOffset < 0 || dataOffset > target.size) throw invalid(`${where.what}: offset ${dataOffset} is outside ${target.name} (${target.size} bytes)`, where.at);
    const name = sym.type === STT_OBJECT && imm === 0 ? sym.name : (globalAt(target.index, dataOffset) ?? target.name);
    return { instruction, kind: "data", symbol: name, section: target.name, offset: dataOffset };
  }
  throw invalid(`${where.what}: symbol '${sym.name}' is in section ${target.name}, which is not .maps, code or .data/.rodata/.bss`, where.at);
}

function functionAt(elf: ElfFile, section: ElfSection, offset: number, where: Where): string {
  const f = elf.symbols.find((s) => s.type === STT_FUNC && s.sectionIndex === section.index && s.value === offset);
  if (!f) throw invalid(`${where.what}: no function starts at offset ${offset} of ${section.name}`, where.at);
  return f.name;
}
