/**
 * The house rules of host/ (docs: DESIGN.md "Shape"), checked on the import
 * graph: no import cycles; nothing below cli/ and demo/ imports them; feature
 * folders stay pure; only wasm/ reaches the Wasm instance and its exports;
 * only kernel/ opens datapath maps.
 */
import { describe, expect, it } from "vitest";
import { importCycles, importGraph } from "./import-graph.js";

const graph = importGraph();
const edges = [...graph].flatMap(([from, targets]) => targets.map((to) => ({ from, to })));
const inFolder = (file: string, ...folders: string[]) => folders.some((f) => file.startsWith(`${f}/`));
const show = (list: { from: string; to: string }[]) => list.map((e) => `${e.from} -> ${e.to}`);

describe("host/ import graph", () => {
  it("reads the whole tree", () => {
    expect(graph.size).toBeGreaterThan(100);
    expect(graph.get("index.ts")?.length).toBeGreaterThan(3);
  });

  it("has no import cycle", () => {
    const cycles = importCycles(graph).map((c) => c.join(" -> "));
    expect(cycles, `import cycles in host/:\n${cycles.join("\n")}`).toEqual([]);
  });

  it("keeps agent, forwarder, wasm and kernel code from importing cli/ or demo/", () => {
    const bad = edges.filter((e) => inFolder(e.from, "agent", "forwarder", "wasm", "kernel") && inFolder(e.to, "cli", "demo"));
    expect(show(bad)).toEqual([]);
  });

  it("keeps everything below cli/ and demo/ from importing them", () => {
    const bad = edges.filter((e) => !inFolder(e.from, "cli", "demo") && inFolder(e.to, "cli", "demo"));
    expect(show(bad)).toEqual([]);
  });

  it("keeps the feature folders pure: no Wasm, kernel or bpf(2) code in conntrack, lb, nat, policy, identity", () => {
    const bad = edges.filter((e) => inFolder(e.from, "conntrack", "lb", "nat", "policy", "identity") && inFolder(e.to, "wasm", "kernel", "bpf"));
    expect(show(bad)).toEqual([]);
  });

  it("lets only host/wasm/ load the Wasm module or name its exports", () => {
    const bad = edges.filter((e) => !inFolder(e.from, "wasm") && (e.to === "wasm/module.ts" || e.to === "wasm/exports.ts"));
    expect(show(bad)).toEqual([]);
  });

  it("lets only host/wasm/ and the Wasm Datapath (host/datapath.ts) hold a WasmCore", () => {
    const bad = edges.filter((e) => !inFolder(e.from, "wasm") && e.from !== "datapath.ts" && e.to === "wasm/core.ts");
    expect(show(bad)).toEqual([]);
  });

  it("lets only host/kernel/ (and bpf/, which defines them) open BPF maps or objects", () => {
    const bad = edges.filter((e) => !inFolder(e.from, "kernel", "bpf") && (e.to === "bpf/map.ts" || e.to === "bpf/object.ts"));
    expect(show(bad)).toEqual([]);
  });
});
