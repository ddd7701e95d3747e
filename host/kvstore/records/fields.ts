/**
 * Reading record fields, in one of two modes:
 * - "decode": a record read from the kvstore; an unknown field is an error
 *   (a record carries only what agents need, so a stray field means a writer
 *   that does not follow the format);
 * - "slim": a richer object (a manifest, a full node) cut down to the fields
 *   agents need; anything else is dropped.
 * Every error names the key and the field path.
 */
import { InvalidInputError } from "../../errors.js";
import { parseIp } from "../../packet/address.js";
import { parsePrefix } from "../../identity/cidr.js";

export type Mode = "decode" | "slim";
export type Obj = Record<string, unknown>;

export function fail(path: string, message: string): never {
  throw new InvalidInputError(`${path}: ${message}`);
}

function show(v: unknown): string {
  if (v === undefined) return "nothing";
  const s = JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

export function object(v: unknown, path: string, mode: Mode, allowed: readonly string[]): Obj {
  if (typeof v !== "object" || v === null || Array.isArray(v)) fail(path, `expected an object, got ${show(v)}`);
  if (mode === "decode") {
    for (const k of Object.keys(v)) if (!allowed.includes(k)) fail(`${path}.${k}`, `unknown field (a v1 record has: ${allowed.join(", ")})`);
  }
  return v as Obj;
}

export function list(v: unknown, path: string): unknown[] {
  if (!Array.isArray(v)) fail(path, `expected a list, got ${show(v)}`);
  return v;
}

export function text(v: unknown, path: string): string {
  if (typeof v !== "string" || v === "") fail(path, `expected a non-empty string, got ${show(v)}`);
  return v;
}

export function optionalText(v: unknown, path: string): string | undefined {
  return v === undefined || v === null ? undefined : text(v, path);
}

export function integer(v: unknown, path: string, min: number, max: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) fail(path, `expected a whole number in ${min}..${max}, got ${show(v)}`);
  return v;
}

export function ip(v: unknown, path: string): string {
  const s = text(v, path);
  try {
    parseIp(s);
  } catch (err) {
    fail(path, (err as Error).message);
  }
  return s;
}

export function optionalIp(v: unknown, path: string): string | undefined {
  return v === undefined || v === null ? undefined : ip(v, path);
}

export function prefix(v: unknown, path: string): string {
  return parsePrefix(text(v, path), path).text;
}

export function optionalPrefix(v: unknown, path: string): string | undefined {
  return v === undefined || v === null ? undefined : prefix(v, path);
}

export function oneOf<T extends string>(v: unknown, path: string, allowed: readonly T[]): T {
  if (typeof v !== "string" || !allowed.includes(v as T)) fail(path, `expected one of ${allowed.join(", ")}, got ${show(v)}`);
  return v as T;
}

/** Drops undefined members so equal records encode to equal text. */
export function compact<T extends object>(o: T): T {
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] === undefined) delete o[k];
  return o;
}
