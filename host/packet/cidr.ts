/**
 * IP prefixes for CIDR rules and the ipcache: parsing (strict: no host bits),
 * containment and the chain of enclosing prefixes that becomes a CIDR
 * identity's labels.
 */
import { InvalidInputError } from "../errors.js";
import { formatIp, parseIp, type IpFamily } from "../packet/address.js";

export interface Prefix {
  family: IpFamily;
  bytes: Uint8Array;
  length: number;
  /** Canonical text: "10.0.0.0/8", "fd00::/8". */
  text: string;
}

export function parsePrefix(text: unknown, path: string): Prefix {
  if (typeof text !== "string") throw new InvalidInputError(`${path}: expected a CIDR string like "10.0.0.0/8", got ${JSON.stringify(text)}`);
  const m = /^([^/]+)\/(\d{1,3})$/.exec(text);
  if (!m) throw new InvalidInputError(`${path}: expected ADDRESS/PREFIX-LENGTH, got ${JSON.stringify(text)}`);
  let family: IpFamily, bytes: Uint8Array;
  try {
    ({ family, bytes } = parseIp(m[1]!));
  } catch (err) {
    throw new InvalidInputError(`${path}: ${(err as Error).message}`);
  }
  const length = Number(m[2]);
  const max = family === 4 ? 32 : 128;
  if (length > max) throw new InvalidInputError(`${path}: prefix length ${length} is too long for IPv${family} (at most ${max})`);
  const masked = mask(bytes, length);
  if (!equalBytes(masked, bytes)) {
    throw new InvalidInputError(`${path}: ${text} has bits set beyond the prefix length (did you mean ${formatIp(masked)}/${length}?)`);
  }
  return { family, bytes, length, text: `${formatIp(bytes)}/${length}` };
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
