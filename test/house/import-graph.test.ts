// The import-graph reader behind imports.test.ts: it must see every import form and name the cycle it finds.
import { describe, expect, it } from "vitest";
import { importCycles, importsOf } from "./import-graph.js";

describe("import graph reader", () => {
  it("reads static, type-only, re-export and dynamic imports, and skips comments and packages", () => {
    const source = [
      'import { a } from "./a.js";',
      'import type { B } from "../b.js";',
      'export { c } from "./c.js";',
      'export * from "./d.js";',
      'const e = await import("./e.js");',
      'import {\n  f,\n  g,\n} from "./fg.js";',
      '// import { no } from "./commented.js";',
      '/* import { no } from "./block.js"; */',
      'import { readFileSync } from "node:fs";',
    ].join("\n");
    expect(importsOf(source)).toEqual(["./a.js", "../b.js", "./c.js", "./d.js", "./e.js", "./fg.js"]);
  });

  it("prints a cycle as the path that closes it", () => {
    const graph = new Map([
      ["a.ts", ["b.ts"]],
      ["b.ts", ["c.ts"]],
      ["c.ts", ["a.ts", "d.ts"]],
      ["d.ts", []],
    ]);
    expect(importCycles(graph)).toEqual([["a.ts", "b.ts", "c.ts", "a.ts"]]);
  });

  it("finds a file importing itself and reports nothing for a tree", () => {
    expect(importCycles(new Map([["a.ts", ["a.ts"]]]))).toEqual([["a.ts", "a.ts"]]);
    expect(importCycles(new Map([["a.ts", ["b.ts", "c.ts"]], ["b.ts", ["c.ts"]], ["c.ts", []]]))).toEqual([]);
  });
});
