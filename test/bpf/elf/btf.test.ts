// The BTF parser on hand-encoded sections: every kind decodes to the right
// plain data, the helpers answer like C would, and corrupt BTF (dangling ids,
// loops, truncation) fails with BPF_BTF_INVALID instead of crashing or hanging.
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { MembraneError } from "../../../host/errors.js";
import {
  findDatasec, findStruct, parseBtf, readBtfMapDefinitions, resolveType, structMembers, typeName, typeSize, type Btf,
} from "../../../host/bpf/elf/index.js";
import { BtfBuilder, KIND } from "./btf-builder.js";

const SIGNED = 1;
const CHAR = 2;
const BOOL = 4;

/** One type of every kind, ids in comments. */
function everyKind(): { bytes: Uint8Array; ids: Record<string, number> } {
  const b = new BtfBuilder();
  const ids: Record<string, number> = {};
  ids.int = b.int("int", 4, 32, SIGNED); // 1
  ids.char = b.int("char", 1, 8, SIGNED | CHAR); // 2
  ids.ptr = b.ref(KIND.PTR, "", ids.int); // 3
  ids.arr3 = b.array(ids.int, ids.int, 3); // 4
  ids.arr2x3 = b.array(ids.arr3, ids.int, 2); // 5: int[2][3]
  // struct pair { int a:3; int b; } with kind_flag bitfield encoding.
  ids.pair = b.composite(KIND.STRUCT, "pair", 8, [
    { name: "a", type: ids.int, offset: (3 << 24) | 0 },
    { name: "b", type: ids.int, offset: 32 },
  ], true); // 6
  ids.union = b.composite(KIND.UNION, "u", 8, [
    { name: "p", type: ids.ptr, offset: 0 },
    { name: "c", type: ids.char, offset: 0 },
  ]); // 7
  ids.enum = b.type(KIND.ENUM, "color", 2, 4, [b.str("RED"), 0, b.str("NEG"), -1], true); // 8: signed
  ids.fwd = b.type(KIND.FWD, "later", 0, 0, [], true); // 9: union later;
  ids.typedef = b.ref(KIND.TYPEDEF, "myint", ids.int); // 10
  ids.volatile = b.ref(KIND.VOLATILE, "", ids.typedef); // 11
  ids.const = b.ref(KIND.CONST, "", ids.volatile); // 12
  ids.restrict = b.ref(KIND.RESTRICT, "", ids.ptr); // 13
  ids.proto = b.type(KIND.FUNC_PROTO, "", 2, ids.int, [b.str("a"), ids.ptr, b.str("b"), ids.typedef]); // 14
  ids.func = b.type(KIND.FUNC, "f", 1 /* global */, ids.proto); // 15
  ids.var = b.type(KIND.VAR, "v", 0, ids.const, [1]); // 16
  ids.datasec = b.type(KIND.DATASEC, ".data", 1, 4, [ids.var, 0, 4]); // 17
  ids.float = b.type(KIND.FLOAT, "double", 0, 8); // 18
  ids.declTag = b.type(KIND.DECL_TAG, "tag1", 0, ids.pair, [1]); // 19
  ids.typeTag = b.ref(KIND.TYPE_TAG, "user", ids.int); // 20
  ids.enum64 = b.type(KIND.ENUM64, "big", 1, 8, [b.str("HUGE"), 0xfffffffe, 0xffffffff]); // 21: unsigned
  ids.ptrTag = b.ref(KIND.PTR, "", ids.typeTag); // 22
  ids.bool = b.int("_Bool", 1, 1, BOOL); // 23
  return { bytes: b.bytes(), ids };
}

function btfError(run: () => unknown): MembraneError {
  try {
    run();
  } catch (err) {
    expect(err).toBeInstanceOf(MembraneError);
    expect((err as MembraneError).code).toBe("BPF_BTF_INVALID");
    return err as MembraneError;
  }
  throw new Error("expected a BPF_BTF_INVALID error");
}

describe("parseBtf decodes every kind", () => {
  const { bytes, ids } = everyKind();
  const btf = parseBtf(bytes, 1000);

  test("header and type count", () => {
    expect(btf.header).toMatchObject({ version: 1, flags: 0, headerLength: 24, typeOffset: 0 });
    expect(btf.types).toHaveLength(24); // void + 23
    expect(btf.types[0]).toEqual({ kind: "void", id: 0, name: "" });
    // Record offsets are file offsets: base + header + position in the type section.
    expect(btf.typeOffsets[1]).toBe(1000 + 24);
    expect(btf.typeOffsets[2]).toBe(1000 + 24 + 16);
  });

  test("scalars, pointers and arrays", () => {
    expect(btf.types[ids.int!]).toEqual({ kind: "int", id: 1, name: "int", size: 4, signed: true, char: false, bool: false, bitOffset: 0, bits: 32 });
    expect(btf.types[ids.char!]).toMatchObject({ kind: "int", signed: true, char: true, bool: false, bits: 8 });
    expect(btf.types[ids.bool!]).toMatchObject({ kind: "int", bool: true, bits: 1, size: 1 });
    expect(btf.types[ids.ptr!]).toEqual({ kind: "ptr", id: ids.ptr, name: "", type: ids.int });
    expect(btf.types[ids.arr3!]).toEqual({ kind: "array", id: ids.arr3, name: "", type: ids.int, indexType: ids.int, nelems: 3 });
    expect(btf.types[ids.float!]).toEqual({ kind: "float", id: ids.float, name: "double", size: 8 });
  });

  test("structs with bitfields, unions, forward declarations", () => {
    expect(btf.types[ids.pair!]).toEqual({
      kind: "struct", id: ids.pair, name: "pair", size: 8,
      members: [
        { name: "a", type: ids.int, bitOffset: 0, bitfieldSize: 3 },
        { name: "b", type: ids.int, bitOffset: 32, bitfieldSize: 0 },
      ],
    });
    expect(btf.types[ids.union!]).toMatchObject({ kind: "union", name: "u", size: 8 });
    expect(btf.types[ids.fwd!]).toEqual({ kind: "fwd", id: ids.fwd, name: "later", union: true });
  });

  test("enums: signed 32-bit and unsigned 64-bit values", () => {
    expect(btf.types[ids.enum!]).toEqual({
      kind: "enum", id: ids.enum, name: "color", size: 4, signed: true,
      values: [{ name: "RED", value: 0 }, { name: "NEG", value: -1 }],
    });
    expect(btf.types[ids.enum64!]).toEqual({
      kind: "enum64", id: ids.enum64, name: "big", size: 8, signed: false,
      values: [{ name: "HUGE", value: 0xfffffffffffffffen }],
    });
  });

  test("modifiers, functions, variables, sections and tags", () => {
    expect(btf.types[ids.typedef!]).toEqual({ kind: "typedef", id: ids.typedef, name: "myint", type: ids.int });
    expect(btf.types[ids.volatile!]).toMatchObject({ kind: "volatile", type: ids.typedef });
    expect(btf.types[ids.const!]).toMatchObject({ kind: "const", type: ids.volatile });
    expect(btf.types[ids.restrict!]).toMatchObject({ kind: "restrict", type: ids.ptr });
    expect(btf.types[ids.typeTag!]).toEqual({ kind: "type_tag", id: ids.typeTag, name: "user", type: ids.int });
    expect(btf.types[ids.proto!]).toEqual({
      kind: "func_proto", id: ids.proto, name: "", returnType: ids.int,
      params: [{ name: "a", type: ids.ptr }, { name: "b", type: ids.typedef }],
    });
    expect(btf.types[ids.func!]).toEqual({ kind: "func", id: ids.func, name: "f", type: ids.proto, linkage: 1 });
    expect(btf.types[ids.var!]).toEqual({ kind: "var", id: ids.var, name: "v", type: ids.const, linkage: 1 });
    expect(btf.types[ids.datasec!]).toEqual({ kind: "datasec", id: ids.datasec, name: ".data", size: 4, vars: [{ type: ids.var, offset: 0, size: 4 }] });
    expect(btf.types[ids.declTag!]).toEqual({ kind: "decl_tag", id: ids.declTag, name: "tag1", type: ids.pair, componentIndex: 1 });
  });
});

describe("BTF helpers", () => {
  const { bytes, ids } = everyKind();
  const btf = parseBtf(bytes);

  test("resolveType skips typedef, const, volatile, restrict and type tags", () => {
    expect(resolveType(btf, ids.const!).id).toBe(ids.int);
    expect(resolveType(btf, ids.typeTag!).id).toBe(ids.int);
    expect(resolveType(btf, ids.restrict!).id).toBe(ids.ptr);
    expect(resolveType(btf, ids.pair!).id).toBe(ids.pair);
  });

  test("typeSize is sizeof", () => {
    const sizes = Object.fromEntries(
      ["int", "char", "ptr", "arr3", "arr2x3", "pair", "union", "enum", "typedef", "const", "var", "datasec", "float", "enum64", "bool"].map((k) => [k, typeSize(btf, ids[k]!)]),
    );
    expect(sizes).toEqual({
      int: 4, char: 1, ptr: 8, arr3: 12, arr2x3: 24, pair: 8, union: 8, enum: 4, typedef: 4, const: 4, var: 4, datasec: 4,
      float: 8, enum64: 8, bool: 1,
    });
    for (const k of ["fwd", "proto", "func"]) expect(btfError(() => typeSize(btf, ids[k]!)).message).toMatch(/has no size/);
    expect(btfError(() => typeSize(btf, 0)).message).toMatch(/type #0 \(void ''\) has no size/);
  });

  test("typeName spells types as C does", () => {
    const names = Object.fromEntries(Object.entries(ids).map(([k, id]) => [k, typeName(btf, id)]));
    expect(names).toEqual({
      int: "int", char: "char", ptr: "int *", arr3: "int[3]", arr2x3: "int[2][3]", pair: "struct pair", union: "union u",
      enum: "enum color", fwd: "union later", typedef: "myint", volatile: "volatile myint", const: "const volatile myint",
      restrict: "restrict int *", proto: "int (int *, myint)", func: "f", var: "const volatile myint", datasec: ".data",
      float: "double", declTag: "tag1", typeTag: "int", enum64: "enum big", ptrTag: "int *", bool: "_Bool",
    });
    expect(typeName(btf, 0)).toBe("void");
  });

  test("findStruct, structMembers, findDatasec", () => {
    expect(findStruct(btf, "pair")?.id).toBe(ids.pair);
    expect(findStruct(btf, "u")?.kind).toBe("union");
    expect(findStruct(btf, "later")).toBeUndefined(); // a forward declaration has no layout
    expect(findStruct(btf, "nope")).toBeUndefined();
    expect(structMembers(btf, ids.pair!)).toEqual([
      { name: "a", offset: 0, size: 4, type: ids.int, typeName: "int", bitOffset: 0, bitfieldSize: 3 },
      { name: "b", offset: 4, size: 4, type: ids.int, typeName: "int", bitOffset: 32, bitfieldSize: 0 },
    ]);
    expect(structMembers(btf, ids.union!).map((m) => [m.name, m.offset, m.size, m.typeName])).toEqual([
      ["p", 0, 8, "int *"],
      ["c", 0, 1, "char"],
    ]);
    expect(btfError(() => structMembers(btf, ids.int!)).message).toMatch(/not a struct or union/);
    expect(findDatasec(btf, ".data")?.id).toBe(ids.datasec);
    expect(findDatasec(btf, ".maps")).toBeUndefined();
    expect(readBtfMapDefinitions(btf)).toEqual([]);
  });
});

describe("corrupt BTF fails with BPF_BTF_INVALID", () => {
  test("bad magic, big-endian magic, bad version", () => {
    const { bytes } = everyKind();
    const bad = bytes.slice();
    bad[0] = 0;
    expect(btfError(() => parseBtf(bad, 500)).message).toMatch(/magic is 0xeb00, want 0xeb9f \(at byte 500\)/);
    const be = bytes.slice();
    be[0] = 0xeb;
    be[1] = 0x9f;
    expect(btfError(() => parseBtf(be)).message).toMatch(/big-endian/);
    const v2 = bytes.slice();
    v2[2] = 2;
    expect(btfError(() => parseBtf(v2)).message).toMatch(/version 2, want 1 \(at byte 2\)/);
  });

  test("truncated anywhere", () => {
    const { bytes } = everyKind();
    for (let n = 0; n < bytes.length; n++) {
      expect(btfError(() => parseBtf(bytes.subarray(0, n))).message, `length ${n}`).toMatch(/at byte \d+/);
    }
  });

  test("a reference to a type that does not exist", () => {
    const b = new BtfBuilder();
    b.int("int", 4, 32, SIGNED);
    b.ref(KIND.PTR, "", 99);
    expect(btfError(() => parseBtf(b.bytes())).message).toBe(
      "invalid BTF: type #2 (ptr '') type refers to type #99, but there are only 2 types (at byte 40)",
    );
  });

  test("typedef loops are found, not followed forever", () => {
    const b = new BtfBuilder();
    const a = b.ref(KIND.TYPEDEF, "a", 2);
    b.ref(KIND.TYPEDEF, "b", a);
    const arr = b.array(3, 0, 2); // an array of itself
    const c = b.ref(KIND.CONST, "", 5); // const volatile const volatile ...
    b.ref(KIND.VOLATILE, "", c);
    const btf: Btf = parseBtf(b.bytes());
    expect(btfError(() => resolveType(btf, a)).message).toMatch(/type #1: modifier chain is longer than 32 \(a loop\?\) \(at byte 24\)/);
    expect(btfError(() => typeSize(btf, a)).message).toMatch(/loop/);
    // A typedef is spelled by its own name, so only the qualifier loop is followed.
    expect(typeName(btf, a)).toBe("a");
    expect(btfError(() => typeName(btf, c)).message).toMatch(/loop/);
    expect(btfError(() => typeSize(btf, arr)).message).toMatch(/loop/);
    expect(btfError(() => typeName(btf, arr)).message).toMatch(/loop/);
  });

  test("unknown kinds and unterminated names", () => {
    const b = new BtfBuilder();
    b.type(25, "x", 0, 0);
    expect(btfError(() => parseBtf(b.bytes())).message).toMatch(/type #1 has unknown kind 25 \(at byte 28\)/);
    const c = new BtfBuilder();
    c.int("int", 4, 32);
    const bytes = c.bytes();
    bytes[bytes.length - 1] = 0x41; // strip the last NUL
    expect(btfError(() => parseBtf(bytes)).message).toMatch(/name of type #1: string at offset 1 has no terminating NUL/);
  });

  test("property: mutated BTF only ever fails with BPF_BTF_INVALID, helpers included", () => {
    const { bytes } = everyKind();
    fc.assert(
      fc.property(
        fc.array(fc.record({ at: fc.nat({ max: bytes.length - 1 }), value: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 6 }),
        (edits) => {
          const mutated = bytes.slice();
          for (const { at, value } of edits) mutated[at] = value;
          try {
            const btf = parseBtf(mutated);
            for (const t of btf.types) {
              for (const helper of [resolveType, typeSize, typeName, structMembers]) {
                try {
                  helper(btf, t.id);
                } catch (err) {
                  if (!(err instanceof MembraneError && err.code === "BPF_BTF_INVALID")) throw err;
                }
              }
            }
            readBtfMapDefinitions(btf);
          } catch (err) {
            if (!(err instanceof MembraneError && err.code === "BPF_BTF_INVALID")) throw err;
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});
