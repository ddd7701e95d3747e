/**
 * A native library membrane can do without (build/native/*.so, built by
 * `npm run build:native`): loaded once through koffi, its ABI version checked,
 * and when it is missing, stale or switched off by its environment variable,
 * `get()` returns undefined after a one-line notice (none when switched off on
 * purpose) and the caller keeps its slower JavaScript path, which gives the
 * same bytes. `unavailable` says why.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { packageRoot } from "../package-root.js";
import { koffi, type NativeFunction } from "./ffi.js";

export type BindFunction = (name: string, ret: string, args: string[]) => NativeFunction;

export interface OptionalNativeSpec<T> {
  /** The library's path under the package root. */
  library: string;
  /** The environment variable that switches it off when "0". */
  envVar: string;
  /** A function of the library returning its ABI version, and the version this binding expects. */
  abiSymbol: string;
  abiVersion: number;
  /** What to do when it was not built, e.g. "npm run build:native; needs a C compiler". */
  buildHint: string;
  /** What the fallback costs, for the notice, e.g. "ESP crypto on node:crypto (slower)". */
  fallback: string;
  bind(fn: BindFunction): T;
}

export class OptionalNative<T> {
  private cached: T | null | undefined;
  /** Why the library is not used, or undefined when it is (after get()). */
  unavailable: string | undefined;

  constructor(private readonly spec: OptionalNativeSpec<T>) {}

  path(): string {
    return join(packageRoot(), this.spec.library);
  }

  get(): T | undefined {
    if (this.cached !== undefined) return this.cached ?? undefined;
    try {
      this.cached = this.load();
    } catch (err) {
      this.cached = null;
      this.unavailable = (err as Error).message;
      if (process.env[this.spec.envVar] !== "0") console.warn(`membrane: ${this.spec.fallback}: ${this.unavailable}`);
    }
    return this.cached ?? undefined;
  }

  private load(): T {
    const { library, envVar, abiSymbol, abiVersion, buildHint } = this.spec;
    if (process.env[envVar] === "0") throw new Error(`${envVar}=0`);
    if (!existsSync(this.path())) throw new Error(`${library} not built (${buildHint})`);
    const lib = koffi().load(this.path());
    const fn: BindFunction = (name, ret, args) => lib.func(name, ret, args);
    const version = fn(abiSymbol, "int", [])() as number;
    if (version !== abiVersion) throw new Error(`${library} is ABI ${version}, expected ${abiVersion} (npm run build:native)`);
    return this.spec.bind(fn);
  }
}
