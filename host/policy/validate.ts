/**
 * Readers for untrusted rule documents: each check throws an
 * InvalidInputError whose message starts with the field path
 * (`spec.ingress[0].toPorts[1].ports[0].port: must be 1..65535`).
 */
import { InvalidInputError } from "../errors.js";

export type Obj = Record<string, unknown>;

export function fail(path: string, message: string): never {
  throw new InvalidInputError(`${path}: ${message}`);
}

export function describe(v: unknown): string {
  if (v === undefined) return "nothing";
  const s = JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

export function object(v: unknown, path: string): Obj {
  if (typeof v !== "object" || v === null || Array.isArray(v)) fail(path, `expected an object, got ${describe(v)}`);
  return v as Obj;
}

/** An object holding only `allowed` keys: a misspelt field is an error, not a silently wider rule. */
export function fields(v: unknown, path: string, allowed: readonly string[]): Obj {
  const o = object(v, path);
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) fail(`${path}.${k}`, `unknown field (allowed: ${allowed.join(", ")})`);
  }
  return o;
}

export function array(v: unknown, path: string): unknown[] {
  if (!Array.isArray(v)) fail(path, `expected a list, got ${describe(v)}`);
  return v;
}

export function optionalArray(v: unknown, path: string): unknown[] | undefined {
  return v === undefined || v === null ? undefined : array(v, path);
}

export function string(v: unknown, path: string): string {
  if (typeof v !== "string") fail(path, `expected a string, got ${describe(v)}`);
  return v;
}

export function nonEmptyString(v: unknown, path: string): string {
  const s = string(v, path);
  if (s === "") fail(path, "must not be empty");
  return s;
}

/** Kubernetes object names (DNS-1123 subdomain). */
export function objectName(v: unknown, path: string): string {
  const s = nonEmptyString(v, path);
  if (s.length > 253 || !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(s)) {
    fail(path, `${describe(s)} is not a valid name (lower-case letters, digits, "-" and "."; at most 253)`);
  }
  return s;
}
