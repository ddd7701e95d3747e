// readBpfSpec on objects clang really wrote: maps, globals, programs and their
// relocations, and struct layouts must come out exactly as the C source says;
// corrupt input must fail with a MembraneError that says what and where.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, expect, test } from "vitest";
import { MembraneError } from "../../../host/errors.js";
import { readBpfSpec, readElf, specToJson, structLayout, type BpfObjectSpec, type BpfProgramSpec } from "../../../host/bpf/elf/index.js";
import {
  FIXTURES, compileBpf, compileHost, missingBpfToolchain, missingHostCompiler,
} from "./toolchain.js";
import { describeIf, testIf } from "../../support/describe-if.js";

const missingBpf = missingBpfToolchain();
const missingHost = missingHostCompiler();

const LD_IMM64 = 0x18;
const CALL = 0x85;
const EXIT = 0x95;

let dir = "";
let objectBytes: Uint8Array = new Uint8Array(0);
let spec: BpfObjectSpec;

beforeAll(() => {
  if (missingBpf) return; // the suites below say why (describeIf)
  dir = mkdtempSync(join(tmpdir(), "membrane-elf-"));
  objectBytes = compileBpf(join(FIXTURES, "objects.c"), join(dir, "objects.o"));
  spec = readBpfSpec(objectBytes, "objects.o");
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function program(name: string): BpfProgramSpec {
  const p = spec.programs.find((q) => q.name === name);
  if (!p) throw new Error(`no program ${name} in ${spec.programs.map((q) => q.name).join(", ")}`);
  return p;
}

/** The error readBpfSpec throws for `bytes`; fails the test if it does not throw a MembraneError. */
function errorOf(bytes: Uint8Array): MembraneError {
  try {
    readBpfSpec(bytes, "bad.o");
  } catch (err) {
    expect(err).toBeInstanceOf(MembraneError);
    return err as MembraneError;
  }
  throw new Error("readBpfSpec accepted the input");
}

describeIf("readBpfSpec on a compiled object", missingBpf, () => {
  test("BTF-defined maps: type, sizes, entries, flags, pinning and key/value types", () => {
    expect(spec.maps).toEqual([
      {
        name: "flows", type: 1, typeName: "hash", keySize: 16, valueSize: 24, maxEntries: 1024,
        flags: 1 /* BPF_F_NO_PREALLOC */, pinning: "none", keyType: "struct flow_key", valueType: "struct flow_stats",
      },
      {
        name: "nat_cache", type: 9, typeName: "lru_hash", keySize: 16, valueSize: 4, maxEntries: 65536,
        flags: 0, pinning: "by_name", keyType: "struct flow_key", valueType: "__u32",
      },
      // key_size/value_size given as numbers: no BTF type names.
      { name: "counters", type: 6, typeName: "percpu_array", keySize: 4, valueSize: 8, maxEntries: 8, flags: 0, pinning: "none" },
    ]);
  });

  test("global variables: .rodata constant, .data with initial bytes, .bss without", () => {
    expect(spec.globals).toEqual([
      { name: "ENDPOINT_ID", section: ".rodata", offset: 0, size: 4, type: "const volatile __u32", initial: Uint8Array.of(0x34, 0x12, 0, 0) },
      { name: "drops_total", section: ".data", offset: 0, size: 8, type: "__u64", initial: Uint8Array.of(7, 0, 0, 0, 0, 0, 0, 0) },
      {
        name: "policy_default", section: ".data", offset: 8, size: 12, type: "struct policy_entry",
        // allow=1 (bit 0) | proxy_port=8080 (bits 2..17) = 0x7e41; peer.identity=2; auth_type=3; 2 bytes padding.
        initial: Uint8Array.of(0x41, 0x7e, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0),
      },
      { name: "seen_packets", section: ".data", offset: 20, size: 4, type: "volatile __u32", initial: Uint8Array.of(3, 0, 0, 0) },
      { name: "last_ifindex", section: ".bss", offset: 0, size: 4, type: "__u32" },
    ]);
  });

  test("license", () => {
    expect(spec.license).toBe("GPL");
    expect(spec.name).toBe("objects.o");
  });

  test("one program per function, with section, placement and instruction bytes", () => {
    expect(spec.programs.map((p) => [p.name, p.section, p.subprogram, p.global])).toEqual([
      ["classify", ".text", true, true],
      ["count", ".text", true, false],
      ["tc_ingress", "tc", false, true],
    ]);
    const text = spec.programs.filter((p) => p.section === ".text");
    // .text functions are laid out back to back: classify, then count.
    expect(text[0]!.offset).toBe(0);
    expect(text[1]!.offset).toBe(text[0]!.size);
    for (const p of spec.programs) {
      expect(p.size, p.name).toBe(p.instructionCount * 8);
      expect(p.instructions.length, p.name).toBe(p.size);
      expect(p.instructions[p.size - 8], `${p.name} ends with exit`).toBe(EXIT);
    }
    expect(program("tc_ingress").offset).toBe(0);
  });

  test("tc program relocations name the maps, globals and callees it references, in order", () => {
    const tc = program("tc_ingress");
    expect(tc.relocations.map(({ kind, symbol, section, offset }) => ({ kind, symbol, section, offset }))).toEqual([
      { kind: "data", symbol: "last_ifindex", section: ".bss", offset: 0 },
      { kind: "map", symbol: "flows", section: ".maps", offset: 0 },
      { kind: "map", symbol: "nat_cache", section: ".maps", offset: 40 },
      { kind: "data", symbol: "ENDPOINT_ID", section: ".rodata", offset: 0 },
      { kind: "data", symbol: "drops_total", section: ".data", offset: 0 },
      // static callee: relocation against the .text section symbol, target from the call's imm.
      { kind: "call", symbol: "count", section: ".text", offset: program("count").offset },
      // global callee: relocation against its own symbol.
      { kind: "call", symbol: "classify", section: ".text", offset: 0 },
    ]);
    for (const r of tc.relocations) {
      const opcode = tc.instructions[r.instruction * 8];
      expect(opcode, `${r.kind} ${r.symbol} at instruction ${r.instruction}`).toBe(r.kind === "call" ? CALL : LD_IMM64);
      if (r.kind === "call") expect(tc.instructions[r.instruction * 8 + 1]! >> 4, "src_reg is BPF_PSEUDO_CALL").toBe(1);
    }
  });

  test("subprogram relocations: map from .text, static variable through a section symbol", () => {
    expect(program("count").relocations.map((r) => [r.kind, r.symbol, r.section, r.offset])).toEqual([["map", "counters", ".maps", 80]]);
    // seen_packets is static: clang relocates against .data with the offset in the immediate.
    expect(program("classify").relocations.map((r) => [r.kind, r.symbol, r.section, r.offset])).toEqual([
      ["data", "seen_packets", ".data", 20],
      ["data", "policy_default", ".data", 8],
    ]);
  });

  test("struct layouts from BTF match the offsets asserted in C", () => {
    expect(structLayout(spec, "flow_key")).toEqual({
      kind: "struct", size: 16,
      members: [
        { name: "saddr", offset: 0, size: 4, type: "__be32" },
        { name: "daddr", offset: 4, size: 4, type: "__be32" },
        { name: "sport", offset: 8, size: 2, type: "__be16" },
        { name: "dport", offset: 10, size: 2, type: "__be16" },
        { name: "proto", offset: 12, size: 1, type: "__u8" },
        { name: "pad", offset: 13, size: 3, type: "__u8[3]" },
      ],
    });
    expect(structLayout(spec, "flow_stats")).toEqual({
      kind: "struct", size: 24,
      members: [
        { name: "packets", offset: 0, size: 8, type: "__u64" },
        { name: "bytes", offset: 8, size: 8, type: "__u64" },
        { name: "last_seen", offset: 16, size: 4, type: "__u32" },
        { name: "ifindex", offset: 20, size: 2, type: "__u16" },
        { name: "flags", offset: 22, size: 1, type: "__u8" },
      ],
    });
    expect(structLayout(spec, "policy_entry")).toEqual({
      kind: "struct", size: 12,
      members: [
        { name: "allow", offset: 0, size: 4, type: "__u32", bitOffset: 0, bitfieldSize: 1 },
        { name: "audit", offset: 0, size: 4, type: "__u32", bitOffset: 1, bitfieldSize: 1 },
        { name: "proxy_port", offset: 0, size: 4, type: "__u32", bitOffset: 2, bitfieldSize: 16 },
        { name: "reserved", offset: 2, size: 4, type: "__u32", bitOffset: 18, bitfieldSize: 14 },
        { name: "peer", offset: 4, size: 4, type: "union (anon)" },
        { name: "auth_type", offset: 8, size: 2, type: "__u16" },
      ],
    });
    // Kernel structs the program touches are there too; anonymous ones are not keyed.
    expect(structLayout(spec, "__sk_buff")?.size).toBe(192);
    expect(Object.keys(spec.structs).sort()).toEqual(["__sk_buff", "flow_key", "flow_stats", "policy_entry"]);
    expect(structLayout(spec, "constructor")).toBeUndefined();
  });

  test("specToJson: plain JSON, byte arrays as hex, same answer every time", () => {
    const text = specToJson(spec);
    const parsed = JSON.parse(text) as {
      globals: { name: string; initial?: string }[];
      programs: { name: string; instructions: string; size: number }[];
      maps: unknown;
      structs: unknown;
    };
    expect(parsed.globals.find((g) => g.name === "ENDPOINT_ID")?.initial).toBe("34120000");
    expect(parsed.globals.find((g) => g.name === "last_ifindex")).not.toHaveProperty("initial");
    const tc = parsed.programs.find((p) => p.name === "tc_ingress")!;
    expect(tc.instructions).toMatch(/^[0-9a-f]+$/);
    expect(tc.instructions.length).toBe(tc.size * 2);
    expect(parsed.maps).toEqual(spec.maps);
    expect(parsed.structs).toEqual(spec.structs);
    // Building twice from the same bytes gives the same spec (no hidden state).
    expect(specToJson(readBpfSpec(objectBytes, "objects.o"))).toBe(text);
  });

  test("the spec does not alias the input buffer", () => {
    const copy = objectBytes.slice();
    const s = readBpfSpec(copy);
    copy.fill(0);
    expect(s.programs.find((p) => p.name === "tc_ingress")!.instructions).toEqual(program("tc_ingress").instructions);
    expect(s.globals[0]!.initial).toEqual(Uint8Array.of(0x34, 0x12, 0, 0));
  });
});

describeIf("readBpfSpec on map-in-map and prog-array definitions", missingBpf, () => {
  test("__array(values, ...) gives 4-byte fd values and the inner map template", () => {
    const s = readBpfSpec(compileBpf(join(FIXTURES, "map-in-map.c"), join(dir, "map-in-map.o")), "map-in-map.o");
    expect(s.maps).toEqual([
      {
        name: "per_endpoint", type: 13, typeName: "hash_of_maps", keySize: 4, valueSize: 4, maxEntries: 16,
        flags: 0, pinning: "none", keyType: "__u32",
        inner: {
          name: "per_endpoint.inner", type: 2, typeName: "array", keySize: 4, valueSize: 8, maxEntries: 4,
          flags: 0, pinning: "none", keyType: "__u32", valueType: "__u64",
        },
      },
      // Programs, not maps: no inner template.
      { name: "tail_calls", type: 3, typeName: "prog_array", keySize: 4, valueSize: 4, maxEntries: 8, flags: 0, pinning: "none" },
    ]);
    expect(s.programs).toEqual([]);
    expect(s.globals).toEqual([]);
  });
});

describeIf("readBpfSpec rejects bad objects with BPF_ELF_INVALID", missingBpf, () => {
  test("not an ELF file", () => {
    const err = errorOf(new TextEncoder().encode("#!/bin/sh\necho hello\n"));
    expect(err.code).toBe("BPF_ELF_INVALID");
    expect(err.message).toMatch(/read BPF object bad\.o: .*not an ELF file.*at byte 0/);
  });

  test("truncated files name the truncation and the byte offset", () => {
    for (const length of [0, 3, 40, 63, 64, 1000, objectBytes.length >> 1, objectBytes.length - 1]) {
      const err = errorOf(objectBytes.subarray(0, length));
      expect(err.code, `length ${length}`).toBe("BPF_ELF_INVALID");
      expect(err.message, `length ${length}`).toMatch(/at byte \d+/);
    }
    expect(errorOf(objectBytes.subarray(0, 40)).message).toMatch(/shorter than the 64-byte ELF64 header/);
    expect(errorOf(objectBytes.subarray(0, objectBytes.length - 1)).message).toMatch(/truncated/);
  });

  testIf("an x86-64 object from the host compiler is the wrong machine", missingHost, () => {
    const host = compileHost(join(FIXTURES, "host.c"), join(dir, "host.o"));
    const err = errorOf(host);
    expect(err.code).toBe("BPF_ELF_INVALID");
    expect(err.message).toMatch(/e_machine is 62 \(x86-64\), want 247 \(BPF\).*at byte 18/);
  });

  test("a big-endian BPF object", () => {
    const be = compileBpf(join(FIXTURES, "host.c"), join(dir, "host-be.o"), ["--target=bpfeb"]);
    const err = errorOf(be);
    expect(err.code).toBe("BPF_ELF_INVALID");
    expect(err.message).toMatch(/big-endian.*at byte 5/);
  });

  test("a section header pointing past the end of the file", () => {
    const bytes = objectBytes.slice();
    const view = new DataView(bytes.buffer);
    const shoff = Number(view.getBigUint64(40, true));
    // Section 2's sh_offset (header at shoff + 2*64, field at +24) moved past the end.
    view.setBigUint64(shoff + 2 * 64 + 24, BigInt(bytes.length), true);
    const err = errorOf(bytes);
    expect(err.code).toBe("BPF_ELF_INVALID");
    expect(err.message).toContain(`section header 2: contents`);
    expect(err.message).toContain(`(at byte ${shoff + 2 * 64 + 24})`);
  });

  test("a map definition with an unknown field (libbpf rejects it too)", () => {
    const bytes = compileBpf(join(FIXTURES, "bad-map-field.c"), join(dir, "bad-map-field.o"));
    const err = errorOf(bytes);
    expect(err.code).toBe("BPF_BTF_INVALID");
    expect(err.message).toContain("map 'typo': unknown field 'max_entires'");
  });

  test("a map whose key_size disagrees with its key type", () => {
    const bytes = compileBpf(join(FIXTURES, "bad-map-size.c"), join(dir, "bad-map-size.o"));
    const err = errorOf(bytes);
    expect(err.code).toBe("BPF_BTF_INVALID");
    expect(err.message).toContain("map 'mismatch': key_size and __type(key, T) disagree: 4 vs 8 bytes");
  });
});

describeIf("readBpfSpec on garbage never throws anything but its own errors", missingBpf, () => {
  const ours = (err: unknown): boolean =>
    err instanceof MembraneError && (err.code === "BPF_ELF_INVALID" || err.code === "BPF_BTF_INVALID");

  function check(bytes: Uint8Array): void {
    try {
      const s = readBpfSpec(bytes);
      // Whatever is accepted must still be plain data.
      JSON.parse(specToJson(s));
    } catch (err) {
      if (!ours(err)) throw err;
    }
  }

  test("random bytes, with and without a valid ELF64 BPF header prefix", () => {
    const header = objectBytes.subarray(0, 64);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 4096 }), fc.boolean(), (tail, withHeader) => {
        const bytes = withHeader ? new Uint8Array([...header, ...tail]) : tail;
        check(bytes);
      }),
      { numRuns: 500 },
    );
  });

  test("a real object with bytes overwritten (reaches sections, symbols, relocations and BTF)", () => {
    const elf = readElf(objectBytes);
    const region = (name: string): fc.Arbitrary<number> => {
      const s = elf.sections.find((q) => q.name === name)!;
      return fc.integer({ min: s.offset, max: s.offset + s.size - 1 });
    };
    const shoff = elf.header.sectionHeaderOffset;
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            // Aim at the parts that are parsed, not just anywhere in the debug info.
            at: fc.oneof(
              fc.nat({ max: objectBytes.length - 1 }),
              fc.integer({ min: shoff, max: objectBytes.length - 1 }),
              region(".BTF"),
              region(".symtab"),
              region(".reltc"),
              region("tc"),
            ),
            value: fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(0, 0xff, 0x7f, 0x80)),
          }),
          { minLength: 1, maxLength: 8 },
        ),
        fc.option(fc.nat({ max: objectBytes.length }), { nil: undefined }),
        (edits, truncateAt) => {
          const bytes = objectBytes.slice(0, truncateAt);
          for (const { at, value } of edits) if (at < bytes.length) bytes[at] = value;
          check(bytes);
        },
      ),
      { numRuns: 500 },
    );
  });
});
