/**
 * SNAT configuration: the `nat` key of the datapath options and state file,
 * validated completely (messages name the key) and encoded into struct
 * nat_config. A family is masqueraded when its section is present.
 */
import { InvalidInputError } from "../errors.js";
import { ipv4Word, parseIp, type IpFamily } from "../packet/address.js";
import { maskBytes, readCidr, type Prefix } from "../packet/cidr.js";
import { NAT_CONFIG, NatConfigFlags, NatLimits, encodeNatConfig, type NatCidr4, type NatCidr6 } from "../generated/layout.js";
import { integerInRange } from "../config-values.js";

export interface NatFamilyOptions {
  /** The masquerade address (usually the node's address on its external device). */
  address: string;
  /** Pod / cluster prefixes: sources masqueraded, destinations never (none: every source). */
  clusterCidrs?: string[];
  /** Prefixes whose traffic (from or to) keeps its addresses. */
  excludedCidrs?: string[];
}

export interface NatOptions {
  ipv4?: NatFamilyOptions;
  ipv6?: NatFamilyOptions;
  /** Ports (and ICMP identifiers) handed out: 1024..65535 by default. */
  ports?: { min?: number; max?: number };
  /** Candidates tried after the original port (16, as Cilium 1.5; at most 128). */
  retries?: number;
  /** Entries per family table, two per mapping (524,288 as Cilium 1.5). */
  entries?: number;
  /** Seeds the port candidates (random by default). */
  seed?: number;
}

export interface ResolvedCidr { prefix: number; bytes: Uint8Array }

/** Resolved options keep the input's shape (so they are valid options themselves), with defaults filled in. */
export type ResolvedNatFamily = Required<NatFamilyOptions>;

export interface ResolvedNat {
  ipv4?: ResolvedNatFamily;
  ipv6?: ResolvedNatFamily;
  ports: { min: number; max: number };
  retries: number;
  entries: number;
  seed: number;
}

export const NAT_DEFAULTS = { ports: { min: 1024, max: 65535 }, retries: 16, entries: 524_288 } as const;
const MAX_ENTRIES = 16 * 1024 * 1024;

function fail(path: string, why: string): never {
  throw new InvalidInputError(`${path}: ${why}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function onlyKeys(v: Record<string, unknown>, allowed: string[], path: string): void {
  for (const k of Object.keys(v)) if (!allowed.includes(k)) fail(`${path}.${k}`, `unknown key (allowed: ${allowed.join(", ")})`);
}

function address(v: unknown, family: IpFamily, path: string): Uint8Array {
  if (typeof v !== "string") fail(path, `expected an IPv${family} address, got ${JSON.stringify(v)}`);
  let parsed;
  try {
    parsed = parseIp(v as string);
  } catch (err) {
    fail(path, (err as Error).message);
  }
  if (parsed!.family !== family) fail(path, `expected an IPv${family} address, got "${v}"`);
  return parsed!.bytes;
}

/** "10.0.0.0/8" -> bytes masked to the prefix; host bits set are refused rather than guessed. */
export function parseCidr(v: unknown, family: IpFamily, path: string): ResolvedCidr {
  if (typeof v !== "string" || !v.includes("/")) fail(path, `expected an IPv${family} prefix like ${family === 4 ? "10.0.0.0/8" : "fd00::/8"}, got ${JSON.stringify(v)}`);
  const r = readCidr(v);
  if ("problem" in r) {
    const p = r.problem;
    if (p.kind === "address") fail(path, p.message);
    if (p.kind === "host-bits") fail(path, `"${v}" has host bits set beyond /${p.length}`);
    fail(path, `prefix length of "${v}" must be 0..${family === 4 ? 32 : 128}`);
  }
  const { prefix } = r as { prefix: Prefix };
  if (prefix.family !== family) fail(path, `expected an IPv${family} address, got "${(v as string).split("/")[0]}"`);
  return { prefix: prefix.length, bytes: prefix.bytes };
}

function cidrList(v: unknown, family: IpFamily, path: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) fail(path, `expected a list of prefixes, got ${JSON.stringify(v)}`);
  const list = v as unknown[];
  if (list.length > NatLimits.NAT_MAX_CIDRS) fail(path, `at most ${NatLimits.NAT_MAX_CIDRS} prefixes, got ${list.length}`);
  list.forEach((c, i) => parseCidr(c, family, `${path}[${i}]`));
  return list as string[];
}

function family(v: unknown, fam: IpFamily, path: string): ResolvedNatFamily | undefined {
  if (v === undefined) return undefined;
  if (!isObject(v)) fail(path, `expected an object, got ${JSON.stringify(v)}`);
  const o = v as Record<string, unknown>;
  onlyKeys(o, ["address", "clusterCidrs", "excludedCidrs"], path);
  if (o.address === undefined) fail(`${path}.address`, "required: the masquerade address");
  address(o.address, fam, `${path}.address`);
  return {
    address: o.address as string,
    clusterCidrs: cidrList(o.clusterCidrs, fam, `${path}.clusterCidrs`),
    excludedCidrs: cidrList(o.excludedCidrs, fam, `${path}.excludedCidrs`),
  };
}

/** Validates the `nat` options completely; throws InvalidInputError naming the key. Undefined: NAT off. */
export function resolveNat(v: unknown, path = "nat"): ResolvedNat | undefined {
  if (v === undefined) return undefined;
  if (!isObject(v)) fail(path, `expected an object, got ${JSON.stringify(v)}`);
  const o = v as Record<string, unknown>;
  onlyKeys(o, ["ipv4", "ipv6", "ports", "retries", "entries", "seed"], path);
  let ports: { min: number; max: number } = { ...NAT_DEFAULTS.ports };
  if (o.ports !== undefined) {
    if (!isObject(o.ports)) fail(`${path}.ports`, `expected an object, got ${JSON.stringify(o.ports)}`);
    const p = o.ports as Record<string, unknown>;
    onlyKeys(p, ["min", "max"], `${path}.ports`);
    ports = {
      min: p.min === undefined ? ports.min : integerInRange(p.min, 1, 65535, `${path}.ports.min`),
      max: p.max === undefined ? ports.max : integerInRange(p.max, 1, 65535, `${path}.ports.max`),
    };
    if (ports.min > ports.max) fail(`${path}.ports`, `min (${ports.min}) is above max (${ports.max})`);
  }
  const resolved: ResolvedNat = {
    ipv4: family(o.ipv4, 4, `${path}.ipv4`),
    ipv6: family(o.ipv6, 6, `${path}.ipv6`),
    ports,
    retries: o.retries === undefined ? NAT_DEFAULTS.retries : integerInRange(o.retries, 0, NatLimits.NAT_MAX_RETRIES, `${path}.retries`),
    entries: o.entries === undefined ? NAT_DEFAULTS.entries : integerInRange(o.entries, 2, MAX_ENTRIES, `${path}.entries`),
    seed: o.seed === undefined ? (Math.random() * 0x100000000) >>> 0 : integerInRange(o.seed, 0, 0xffffffff, `${path}.seed`),
  };
  if (!resolved.ipv4 && !resolved.ipv6) fail(path, "set ipv4 and/or ipv6 (with the masquerade address) to enable masquerading");
  return resolved;
}

/** Entries the table of a family gets: none when the family is not masqueraded. */
export function natEntries(nat: ResolvedNat | undefined, fam: IpFamily): number {
  return nat && (fam === 4 ? nat.ipv4 : nat.ipv6) ? nat.entries : 0;
}


/** struct nat_config bytes (all zero, NAT off, without options). */
export function encodeNat(nat: ResolvedNat | undefined): Uint8Array {
  const bytes = new Uint8Array(NAT_CONFIG.size);
  if (!nat) return bytes;
  const c4 = (list: string[] = []): NatCidr4[] => pad(list.map((t) => parseCidr(t, 4, "nat")).map((c) => ({ addr: ipv4Word(c.bytes), mask: ipv4Word(maskBytes(c.prefix, 4)) })), { addr: 0, mask: 0 });
  const c6 = (list: string[] = []): NatCidr6[] => pad(list.map((t) => parseCidr(t, 6, "nat")).map((c) => ({ addr: c.bytes, mask: maskBytes(c.prefix, 16) })), { addr: new Uint8Array(16), mask: new Uint8Array(16) });
  const a4 = nat.ipv4 ? address(nat.ipv4.address, 4, "nat.ipv4.address") : undefined;
  const a6 = nat.ipv6 ? address(nat.ipv6.address, 6, "nat.ipv6.address") : undefined;
  encodeNatConfig({
    flags: (nat.ipv4 ? NatConfigFlags.NAT_F_ENABLE4 : 0) | (nat.ipv6 ? NatConfigFlags.NAT_F_ENABLE6 : 0),
    addr4: a4 ? ipv4Word(a4) : 0,
    addr6: a6 ?? new Uint8Array(16),
    portMin: nat.ports.min,
    portMax: nat.ports.max,
    retries: nat.retries,
    maxEntries4: natEntries(nat, 4),
    maxEntries6: natEntries(nat, 6),
    seed: nat.seed,
    cluster4Count: nat.ipv4?.clusterCidrs.length ?? 0,
    excluded4Count: nat.ipv4?.excludedCidrs.length ?? 0,
    cluster6Count: nat.ipv6?.clusterCidrs.length ?? 0,
    excluded6Count: nat.ipv6?.excludedCidrs.length ?? 0,
    cluster4: c4(nat.ipv4?.clusterCidrs),
    excluded4: c4(nat.ipv4?.excludedCidrs),
    cluster6: c6(nat.ipv6?.clusterCidrs),
    excluded6: c6(nat.ipv6?.excludedCidrs),
  }, bytes);
  return bytes;
}

function pad<T>(list: T[], empty: T): T[] {
  return [...list, ...Array.from({ length: NatLimits.NAT_MAX_CIDRS - list.length }, () => empty)];
}
