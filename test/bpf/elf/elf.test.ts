// readElf on a clang-compiled BPF object: the raw ELF view (sections, symbols,
// REL entries) that the spec is built from, and the structural checks that
// keep a corrupt file from being half-read.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, test } from "vitest";
import { MembraneError } from "../../../host/errors.js";
import {
  EM_BPF, SHF_EXECINSTR, SHT_NOBITS, SHT_REL, SHT_RELA, SHT_SYMTAB, STB_GLOBAL, STB_LOCAL, STT_FUNC, STT_OBJECT, STT_SECTION,
  findSection, readElf, sectionData, type ElfFile,
} from "../../../host/bpf/elf/elf.js";
import { FIXTURES, compileBpf, missingBpfToolchain } from "./toolchain.js";
import { describeIf } from "../../support/describe-if.js";

const missing = missingBpfToolchain();

let dir = "";
let bytes: Uint8Array = new Uint8Array(0);
let elf: ElfFile;

beforeAll(() => {
  if (missing) return; // the suites below say why (describeIf)
  dir = mkdtempSync(join(tmpdir(), "membrane-elf-"));
  bytes = compileBpf(join(FIXTURES, "objects.c"), join(dir, "objects.o"));
  elf = readElf(bytes);
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function elfError(b: Uint8Array): MembraneError {
  try {
    readElf(b);
  } catch (err) {
    expect(err).toBeInstanceOf(MembraneError);
    expect((err as MembraneError).code).toBe("BPF_ELF_INVALID");
    return err as MembraneError;
  }
  throw new Error("readElf accepted the input");
}

/** A copy of the object with one section header field overwritten. */
function patchSection(index: number, field: number, value: number | bigint, width: 4 | 8): Uint8Array {
  const b = bytes.slice();
  const v = new DataView(b.buffer);
  const at = elf.header.sectionHeaderOffset + index * 64 + field;
  if (width === 4) v.setUint32(at, Number(value), true);
  else v.setBigUint64(at, BigInt(value), true);
  return b;
}

describeIf("readElf", missing, () => {
  test("header: relocatable BPF object", () => {
    expect(elf.header).toMatchObject({ type: 1, machine: EM_BPF, version: 1, entry: 0, sectionHeaderSize: 64 });
    expect(elf.sections).toHaveLength(elf.header.sectionCount);
    expect(elf.sections[0]).toMatchObject({ index: 0, name: "", type: 0 });
  });

  test("sections by name, with flags and contents", () => {
    const names = elf.sections.map((s) => s.name);
    for (const n of [".text", "tc", ".reltc", ".rel.text", ".rodata", ".data", ".bss", ".maps", "license", ".BTF", ".BTF.ext", ".symtab", ".strtab"]) {
      expect(names, n).toContain(n);
    }
    const tc = findSection(elf, "tc")!;
    expect(tc.flags & SHF_EXECINSTR).toBe(SHF_EXECINSTR);
    expect(sectionData(elf, tc)).toHaveLength(tc.size);
    const bss = findSection(elf, ".bss")!;
    expect(bss.type).toBe(SHT_NOBITS);
    expect(sectionData(elf, bss)).toHaveLength(0);
    expect(new TextDecoder().decode(sectionData(elf, findSection(elf, "license")!))).toBe("GPL\0");
    expect(findSection(elf, ".symtab")!.type).toBe(SHT_SYMTAB);
  });

  test("symbols: name, value, size, section, binding, type", () => {
    const sym = (name: string) => elf.symbols.find((s) => s.name === name && s.type !== STT_SECTION)!;
    const tc = findSection(elf, "tc")!;
    expect(sym("tc_ingress")).toMatchObject({ value: 0, size: tc.size, sectionIndex: tc.index, binding: STB_GLOBAL, type: STT_FUNC });
    expect(sym("count")).toMatchObject({ sectionIndex: findSection(elf, ".text")!.index, binding: STB_LOCAL, type: STT_FUNC });
    expect(sym("ENDPOINT_ID")).toMatchObject({ value: 0, size: 4, sectionIndex: findSection(elf, ".rodata")!.index, binding: STB_GLOBAL, type: STT_OBJECT });
    expect(sym("nat_cache")).toMatchObject({ value: 40, size: 40, sectionIndex: findSection(elf, ".maps")!.index, type: STT_OBJECT });
    expect(sym("seen_packets")).toMatchObject({ value: 20, size: 4, binding: STB_LOCAL, type: STT_OBJECT });
    // Section symbols take their section's name.
    const textSym = elf.symbols.find((s) => s.type === STT_SECTION && s.sectionIndex === findSection(elf, ".text")!.index)!;
    expect(textSym.name).toBe(".text");
  });

  test("REL sections: target section, offsets, symbols and types", () => {
    const tc = findSection(elf, "tc")!;
    const rel = elf.relocations.find((r) => r.section.name === ".reltc")!;
    expect(rel.section.type).toBe(SHT_REL);
    expect(rel.targetIndex).toBe(tc.index);
    expect(rel.entries.map((e) => [elf.symbols[e.symbol]!.name, e.type])).toEqual([
      ["last_ifindex", 1], // R_BPF_64_64 on ld_imm64
      ["flows", 1],
      ["nat_cache", 1],
      ["ENDPOINT_ID", 1],
      ["drops_total", 1],
      [".text", 10], // R_BPF_64_32 on a call, against the section of a static callee
      ["classify", 10],
    ]);
    for (const e of rel.entries) expect(e.offset % 8).toBe(0);
  });
});

describeIf("readElf rejects structural corruption with the byte offset", missing, () => {
  test("32-bit class", () => {
    const b = bytes.slice();
    b[4] = 1;
    expect(elfError(b).message).toBe("invalid BPF ELF object: EI_CLASS is 1, want 2 (ELF64); BPF objects are 64-bit (at byte 4)");
  });

  test("section-name table index out of range", () => {
    const b = bytes.slice();
    new DataView(b.buffer).setUint16(62, 500, true);
    expect(elfError(b).message).toMatch(/e_shstrndx 500 is not a section \(\d+ sections\) \(at byte 62\)/);
  });

  test("section contents past the end of the file", () => {
    const tc = findSection(elf, "tc")!;
    const err = elfError(patchSection(tc.index, 32, bytes.length, 8));
    expect(err.message).toContain(`section header ${tc.index}: contents (${bytes.length} bytes at ${tc.offset}) run past the end of the file`);
    expect(err.message).toContain(`(at byte ${elf.header.sectionHeaderOffset + tc.index * 64 + 24})`);
  });

  test("symbol table size not a multiple of the entry size", () => {
    const symtab = findSection(elf, ".symtab")!;
    expect(elfError(patchSection(symtab.index, 32, symtab.size - 1, 8)).message).toMatch(/symbol table \.symtab is \d+ bytes, not a multiple of 24/);
  });

  test("relocation against a symbol that does not exist", () => {
    const rel = findSection(elf, ".reltc")!;
    const b = bytes.slice();
    // r_info of entry 0: symbol index in the high 32 bits.
    new DataView(b.buffer).setUint32(rel.offset + 8 + 4, 100000, true);
    expect(elfError(b).message).toBe(
      `invalid BPF ELF object: .reltc entry 0: symbol 100000 is out of range (${elf.symbols.length} symbols) (at byte ${rel.offset + 8})`,
    );
  });

  test("RELA sections are refused rather than ignored", () => {
    const rel = findSection(elf, ".reltc")!;
    expect(elfError(patchSection(rel.index, 4, SHT_RELA, 4)).message).toMatch(/\.reltc has RELA relocations; BPF objects use REL/);
  });

  test("64-bit fields too large to be offsets", () => {
    const tc = findSection(elf, "tc")!;
    expect(elfError(patchSection(tc.index, 24, 1n << 60n, 8)).message).toMatch(/section header \d+ sh_offset: value 0x1000000000000000 is too large/);
  });
});
