// The layout contract: generated files match the headers, the generator's
// layout rules match a real C compiler's, and bad headers are rejected clearly.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { generateLayouts, HEADER_ORDER } from "../../host/codegen/main.js";
import { parseHeaders } from "../../host/codegen/parse-c.js";
import { packageRoot } from "../../host/package-root.js";

const root = packageRoot();

describe("generated layouts", () => {
  test("committed files equal what the headers generate (run `npm run gen` after changing a header)", () => {
    for (const { path, content } of generateLayouts(root)) {
      expect(readFileSync(path, "utf8"), path).toBe(content);
    }
  });

  test("struct sizes and offsets agree with the C compiler", () => {
    const model = parseHeaders(HEADER_ORDER.map((f) => ({ file: f, source: readFileSync(join(root, "bpf/include/types", f), "utf8") })));
    // Emit a C program asserting every offset and size the generator computed, and compile it.
    const lines = HEADER_ORDER.map((h) => `#include "${join(root, "bpf/include/types", h)}"`);
    lines.push("#include <stddef.h>");
    for (const s of model.structs) {
      lines.push(`_Static_assert(sizeof(struct ${s.name}) == ${s.size}, "size ${s.name}");`);
      for (const f of s.fields) lines.push(`_Static_assert(offsetof(struct ${s.name}, ${f.name}) == ${f.offset}, "${s.name}.${f.name}");`);
    }
    for (const e of model.enums) for (const m of e.members) lines.push(`_Static_assert(${m.name} == ${m.value}, "${m.name}");`);
    const dir = mkdtempSync(join(tmpdir(), "membrane-layout-"));
    try {
      const file = join(dir, "check.c");
      writeFileSync(file, lines.join("\n") + "\n");
      execFileSync("cc", ["-fsyntax-only", "-Wall", "-Werror", "-Wno-pragma-once-outside-header", file], { stdio: "pipe" });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(model.structs.find((s) => s.name === "ct_tuple4")?.size).toBe(14);
    expect(model.structs.find((s) => s.name === "ct_entry")?.size).toBe(56);
  });

  test("padding follows C: natural alignment unless packed", () => {
    const m = parseHeaders([{ file: "t.h", source: "struct a { __u8 x; __u32 y; __u8 z; };\nstruct b { __u8 x; __u32 y; } __attribute__((packed));\n" }]);
    expect(m.structs[0].fields.map((f) => f.offset)).toEqual([0, 4, 8]);
    expect(m.structs[0].size).toBe(12);
    expect(m.structs[1].size).toBe(5);
  });

  test("enum values and comments", () => {
    const m = parseHeaders([{ file: "t.h", source: "enum e {\n A = 3, /* three */\n B, /* four */\n C = 0x10\n};\n" }]);
    expect(m.enums[0].members).toEqual([
      { name: "A", value: 3, comment: "three" }, { name: "B", value: 4, comment: "four" }, { name: "C", value: 16, comment: undefined },
    ]);
  });

  test.each([
    ["struct a { int x; };", "unsupported type 'int'"],
    ["struct a { __u32 x; };\n_Static_assert(sizeof(struct a) == 8, \"x\");", "struct a is 4 bytes by the layout rules, the header asserts 8"],
    ["typedef __u32 u;", "unexpected 'typedef'"],
    ["struct a { struct b x; };", "struct b used before it is declared"],
    ["struct a { __u8 x[0]; };", "at least one element"],
  ])("rejects %j", (source, message) => {
    expect(() => parseHeaders([{ file: "bad.h", source }])).toThrow(message);
  });
});
