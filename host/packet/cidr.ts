/**
 * IP prefixes for CIDR rules and the ipcache: parsing (strict: no host bits),
 * containment and the chain of enclosing prefixes that becomes a CIDR
 * identity's labels.
 */
import { InvalidInputError } from "../errors.js";
import { formatIp, parseIp, type IpFamily } from "./address.js";

export interface Prefix {
  family: IpFamily;
  bytes: Uint8Array;
  length: number;
  /** Canonical text: "10.0.0.0/8", "fd00::/8". */
  text: string;
}

/** Why a text is not a prefix; callers word it for their input (a flag, a config key, a table record). */
export type CidrProblem =
  | { kind: "type" }
  | { kind: "syntax" }
  | { kind: "address"; message: string }
  | { kind: "length"; length: string; family: IpFamily; max: number }
  | { kind: "host-bits"; length: number; masked: Uint8Array };

/**
 * The one CIDR reader: "ADDRESS/LENGTH" (or a bare address when `bareAddress`,
 * meaning the host prefix) into a Prefix, or the problem with it. Bits set past
 * the prefix length are a problem, never silently masked.
 */
export function readCidr(text: unknown, opts: { bareAddress?: boolean } = {}): { prefix: Prefix } | { problem: CidrProblem } {
  if (typeof text !== "string") return { problem: { kind: "type" } };
  const parts = text.split("/");
  if (parts.length > 2 || (parts.length === 1 && !opts.bareAddress) || parts[0] === "") return { problem: { kind: "syntax" } };
  let family: IpFamily, bytes: Uint8Array;
  try {
    ({ family, bytes } = parseIp(parts[0]!));
  } catch (err) {
    return { problem: { kind: "address", message: (err as Error).message } };
  }
  const max = family === 4 ? 32 : 128;
  const lengthText = parts[1];
  if (lengthText !== undefined && (!/^\d{1,3}$/.test(lengthText) || Number(lengthText) > max)) {
    return { problem: { kind: "length", length: lengthText, family, max } };
  }
  const length = lengthText === undefined ? max : Number(lengthText);
  const masked = mask(bytes, length);
  if (!equalBytes(masked, bytes)) return { problem: { kind: "host-bits", length, masked } };
  return { prefix: { family, bytes, length, text: `${formatIp(bytes)}/${length}` } };
}

/** A prefix of a policy or the ipcache ("10.0.0.0/8"); throws InvalidInputError naming `path`. */
export function parsePrefix(text: unknown, path: string): Prefix {
  const r = readCidr(text);
  if ("prefix" in r) return r.prefix;
  const p = r.problem;
  switch (p.kind) {
    case "type": throw new InvalidInputError(`${path}: expected a CIDR string like "10.0.0.0/8", got ${JSON.stringify(text)}`);
    case "syntax": throw new InvalidInputError(`${path}: expected ADDRESS/PREFIX-LENGTH, got ${JSON.stringify(text)}`);
    case "address": throw new InvalidInputError(`${path}: ${p.message}`);
    case "length":
      if (!/^\d{1,3}$/.test(p.length)) throw new InvalidInputError(`${path}: expected ADDRESS/PREFIX-LENGTH, got ${JSON.stringify(text)}`);
      throw new InvalidInputError(`${path}: prefix length ${p.length} is too long for IPv${p.family} (at most ${p.max})`);
    case "host-bits":
      throw new InvalidInputError(`${path}: ${text as string} has bits set beyond the prefix length (did you mean ${formatIp(p.masked)}/${p.length}?)`);
  }
}

/** The netmask of a prefix length, `bytes` long (4 or 16). */
export function maskBytes(length: number, bytes: number): Uint8Array {
  return mask(new Uint8Array(bytes).fill(0xff), length);
}

/** The host prefix of an address: 10.0.0.1 -> 10.0.0.1/32. */
export function hostPrefix(address: string, path: string): Prefix {
  let family: IpFamily, bytes: Uint8Array;
  try {
    ({ family, bytes } = parseIp(address));
  } catch (err) {
    throw new InvalidInputError(`${path}: ${(err as Error).message}`);
  }
  const length = family === 4 ? 32 : 128;
  return { family, bytes, length, text: `${formatIp(bytes)}/${length}` };
}

function mask(bytes: Uint8Array, length: number): Uint8Array {
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) {
    const bits = Math.max(0, Math.min(8, length - 8 * i));
    out[i] = bytes[i]! & ((0xff << (8 - bits)) & 0xff);
  }
  return out;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/**
 * Whether the IPv4 prefix written `text` ("10.1.2.3/32") lies within
 * `outer`, read without allocating: the ipcache's 100,000 entries are
 * checked against their nodes' CIDRs whenever a node record changes.
 * Undefined unless `text` is an IPv4 prefix the strict reader (readCidr)
 * accepts; the caller then parses it, and gets its error.
 */
export function ipv4TextWithin(outer: Prefix, text: string): boolean | undefined {
  let addr = 0;
  let part = 0;
  let value = 0;
  let digits = 0;
  let i = 0;
  for (; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      if (++digits > 3 || (digits === 2 && value === 0)) return undefined; // a leading zero: the strict reader says why
      value = value * 10 + (c - 48);
    } else if (c === 46 || c === 47) {
      if (digits === 0 || value > 255) return undefined;
      addr = addr * 256 + value;
      value = 0;
      digits = 0;
      part++;
      if (c === 47) break;
      if (part > 3) return undefined;
    } else {
      return undefined;
    }
  }
  if (part !== 4 || i === text.length) return undefined;
  let length = 0;
  let lengthDigits = 0;
  for (i++; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 48 || c > 57 || ++lengthDigits > 2) return undefined;
    length = length * 10 + (c - 48);
  }
  if (lengthDigits === 0 || length > 32) return undefined;
  if (length < 32 && addr % 2 ** (32 - length) !== 0) return undefined; // host bits set: the strict reader refuses it
  if (outer.family !== 4) return false;
  if (outer.length > length) return false;
  const b = outer.bytes;
  const net = ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
  const shift = 32 - outer.length;
  return shift === 32 || Math.floor(addr / 2 ** shift) === Math.floor(net / 2 ** shift);
}

/** Whether `inner` lies within `outer` (a prefix contains itself). */
export function prefixContains(outer: Prefix, inner: Prefix): boolean {
  return outer.family === inner.family && outer.length <= inner.length && equalBytes(mask(inner.bytes, outer.length), outer.bytes);
}

/** `prefix` and every shorter prefix that contains it, down to /0: a CIDR identity's labels. */
export function enclosingPrefixes(prefix: Prefix): string[] {
  const out: string[] = [];
  for (let len = prefix.length; len >= 0; len--) out.push(`${formatIp(mask(prefix.bytes, len))}/${len}`);
  return out;
}

/** The longest of `prefixes` containing `address`, if any: the ipcache's lookup. */
export function longestMatch<T extends { prefix: Prefix }>(items: Iterable<T>, address: Prefix): T | undefined {
  let best: T | undefined;
  for (const it of items) {
    if (prefixContains(it.prefix, address) && (!best || it.prefix.length > best.prefix.length)) best = it;
  }
  return best;
}

/**
 * A filter's address flag ("10.0.0.1" or "10.0.0.0/24") as a test: true when
 * one of the given addresses lies within it (monitor and capture filters).
 */
export function addressMatcher(text: string, path: string): (addresses: readonly (string | undefined)[]) => boolean {
  const prefix = text.includes("/") ? parsePrefix(text, path) : hostPrefix(text, path);
  return (addresses) => addresses.some((a) => a !== undefined && prefixContains(prefix, hostPrefix(a, path)));
}
