/**
 * Loads the compiled Wasm core. The module is compiled once per process and
 * instantiated per datapath; each instance owns its linear memory.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { MembraneError } from "../errors.js";
import { packageRoot } from "../package-root.js";
import type { CoreExports } from "./exports.js";

export type { CoreExports };

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
