/**
 * Loading koffi itself. Kept apart so that importing anything under host/bpf/
 * never fails at import time: koffi is a native addon, and a machine without a
 * prebuilt binary for its platform must still be able to run the Wasm
 * datapath. The first call that needs native code loads it, or throws
 * NotSupportedError saying why.
 */
import { createRequire } from "node:module";
import { NotSupportedError } from "../errors.js";

export type Koffi = typeof import("koffi");

/** A function bound from a shared library; argument checks happen in the typed wrappers. */
export type NativeFunction = (...args: any[]) => any;

let cached: Koffi | undefined;

/** The koffi module, loaded on first use. */
export function koffi(): Koffi {
  if (cached) return cached;
  try {
    const require = createRequire(import.meta.url);
    cached = require("koffi") as Koffi;
  } catch (err) {
    throw new NotSupportedError(
      `native FFI (koffi) cannot be loaded on ${process.platform}-${process.arch}: ` +
        `${(err as Error).message}; run "npm install" so koffi's prebuilt binary for this platform is present`,
      { cause: err },
    );
  }
  return cached;
}
