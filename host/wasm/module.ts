/**
 * Loads the compiled Wasm core. The module is compiled once per process and
 * instantiated per datapath; each instance owns its linear memory.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { MembraneError } from "../errors.js";
import { packageRoot } from "../package-root.js";
import type { PolicyCoreExports } from "./policy-tables.js";

/** The functions assembly/index.ts exports. */
export interface CoreExports extends PolicyCoreExports {
  memory: WebAssembly.Memory;
  INIT_OK: WebAssembly.Global;
  INIT_AGAIN: WebAssembly.Global;
  INIT_NO_MEMORY: WebAssembly.Global;
  config_ptr(): number;
  init(): number;
  memory_used(): number;
  alloc(size: number): number;
  batch_create(count: number, bufSize: number, headroom: number): number;
  metrics_ptr(): number;
  table_stats(id: number): number;
  table_capacity(id: number): number;
  table_count(id: number): number;
  table_key_size(id: number): number;
  table_value_size(id: number): number;
  table_bytes(id: number): number;
  table_dump(id: number, cursor: number, out: number, max: number): number;
  dump_count(): number;
  table_restore(id: number, records: number, count: number): number;
  table_gc(id: number, now: number): number;
  gc_scanned(): number;
  table_flush(id: number): void;
  table_delete(id: number, key: number): number;
  process(desc: number, count: number, now: number): void;
  parse_batch(desc: number, count: number): number;
}

export type CoreBuild = "release" | "debug";

const compiled = new Map<CoreBuild, WebAssembly.Module>();

export function wasmPath(build: CoreBuild): string {
  return join(packageRoot(), "build", build === "release" ? "membrane.wasm" : "membrane.debug.wasm");
}

export function compileCore(build: CoreBuild = "release"): WebAssembly.Module {
  let module = compiled.get(build);
  if (!module) {
    let bytes: Buffer;
    try {
      bytes = readFileSync(wasmPath(build));
    } catch (err) {
      throw new MembraneError("WASM_MISSING", `load the Wasm core: ${wasmPath(build)} is missing; run \`npm run build\``, { cause: err });
    }
    module = new WebAssembly.Module(new Uint8Array(bytes));
    compiled.set(build, module);
  }
  return module;
}

export function instantiateCore(build: CoreBuild = "release"): CoreExports {
  const instance = new WebAssembly.Instance(compileCore(build), {});
  return instance.exports as unknown as CoreExports;
}
