/**
 * The datapath configuration: defaults (Cilium 1.5's), validation and the
 * encoding into struct dp_config. Validation is complete before anything is
 * applied, and every message names the offending key.
 */
import { InvalidInputError } from "./errors.js";
import { CtFullPolicy, DP_CONFIG, encodeDpConfig } from "./generated/layout.js";
import { POLICY_DEFAULTS, POLICY_LIMITS, type PolicyOptions, type ResolvedPolicyOptions } from "./policy/options.js";
import { resolveLbOptions, type LbOptions, type ResolvedLbOptions } from "./lb/options.js";
import { resolveNat, type NatOptions, type ResolvedNat } from "./nat/config.js";
import { integerInRange } from "./config-values.js";

export interface ConntrackOptions {
  /** Entries in each TCP table (IPv4 and IPv6 each). Cilium 1.5: 1,000,000. */
  tcpEntries?: number;
  /** Entries in each non-TCP table. Cilium 1.5: 262,144. */
  otherEntries?: number;
  timeouts?: {
    /** Established TCP, seconds (21600). */
    tcp?: number;
    /** TCP until a packet without SYN is seen (60). */
    syn?: number;
    /** TCP after both directions closed (10). */
    close?: number;
    /** UDP, ICMP and the rest (60). */
    other?: number;
  };
  /** What a full table does with a new flow: evict an entry (CLOCK, approximately least recently used), or drop the flow. */
  whenFull?: "evict-lru" | "drop";
}

export interface FragmentOptions {
  /** Datagrams tracked per family (8192). */
  entries?: number;
  /** Seconds the later fragments of a datagram are awaited (30). */
  timeout?: number;
}

export interface DatapathOptions {
  conntrack?: ConntrackOptions;
  fragments?: FragmentOptions;
  /** Seeds table hashing. Random by default: bucket placement is never compared across datapaths. */
  hashSeed?: number;
  policy?: PolicyOptions;
  /** Service load-balancer table sizes and selection seed (docs/lb.md). */
  lb?: LbOptions;
  /** SNAT / masquerading (host/nat/config.ts); off without it. */
  nat?: NatOptions;
}

export interface ResolvedOptions {
  conntrack: Required<Omit<ConntrackOptions, "timeouts">> & { timeouts: Required<NonNullable<ConntrackOptions["timeouts"]>> };
  fragments: Required<FragmentOptions>;
  hashSeed: number;
  policy: ResolvedPolicyOptions;
  lb: ResolvedLbOptions;
  nat?: ResolvedNat;
}

export const DEFAULTS: ResolvedOptions = {
  conntrack: {
    tcpEntries: 1_000_000,
    otherEntries: 262_144,
    timeouts: { tcp: 21_600, syn: 60, close: 10, other: 60 },
    whenFull: "evict-lru",
  },
  fragments: { entries: 8192, timeout: 30 },
  hashSeed: 0,
  policy: POLICY_DEFAULTS,
  lb: resolveLbOptions(undefined),
};

/** Largest table: 16Mi entries, Cilium's upper bound for conntrack maps. */
export const MAX_TABLE_ENTRIES = 16 * 1024 * 1024;

type Shape = { [key: string]: Shape | ((value: unknown, path: string) => void) };

function integer(min: number, max: number) {
  return (value: unknown, path: string) => void integerInRange(value, min, max, path);
}

function oneOf(...choices: string[]) {
  return (value: unknown, path: string) => {
    if (typeof value !== "string" || !choices.includes(value)) {
      throw new InvalidInputError(`${path}: expected one of ${choices.map((c) => JSON.stringify(c)).join(", ")}, got ${JSON.stringify(value)}`);
    }
  };
}

const SECONDS = integer(1, 0x7fffffff);

const SHAPE: Shape = {
  conntrack: {
    tcpEntries: integer(1, MAX_TABLE_ENTRIES),
    otherEntries: integer(1, MAX_TABLE_ENTRIES),
    timeouts: { tcp: SECONDS, syn: SECONDS, close: SECONDS, other: SECONDS },
    whenFull: oneOf("evict-lru", "drop"),
  },
  fragments: { entries: integer(1, 1 << 20), timeout: SECONDS },
  hashSeed: integer(0, 0xffffffff),
  policy: { endpoints: integer(1, POLICY_LIMITS.endpoints), ipcache: integer(1, POLICY_LIMITS.ipcache), entries: integer(1, POLICY_LIMITS.entries) },
  lb: (value, path) => void resolveLbOptions(value, path),
  nat: (value, path) => void resolveNat(value, path),
};

/** The top-level keys of DatapathOptions: the datapath's section of the state file (host/state/). */
export const DATAPATH_OPTION_KEYS: readonly string[] = Object.keys(SHAPE);

function check(value: unknown, shape: Shape, path: string): void {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new InvalidInputError(`${path || "configuration"}: expected an object, got ${JSON.stringify(value)}`);
  }
  for (const [key, v] of Object.entries(value)) {
    const rule = shape[key];
    const at = path ? `${path}.${key}` : key;
    if (!rule) throw new InvalidInputError(`${at}: unknown key (allowed: ${Object.keys(shape).join(", ")})`);
    if (v === undefined) continue;
    if (typeof rule === "function") rule(v, at);
    else check(v, rule, at);
  }
}

/** Validates `options` completely and fills in defaults; throws InvalidInputError naming the key. */
export function resolveOptions(options: DatapathOptions = {}): ResolvedOptions {
  check(options, SHAPE, "");
  const ct = options.conntrack ?? {};
  return {
    conntrack: {
      tcpEntries: ct.tcpEntries ?? DEFAULTS.conntrack.tcpEntries,
      otherEntries: ct.otherEntries ?? DEFAULTS.conntrack.otherEntries,
      timeouts: { ...DEFAULTS.conntrack.timeouts, ...stripUndefined(ct.timeouts ?? {}) },
      whenFull: ct.whenFull ?? DEFAULTS.conntrack.whenFull,
    },
    fragments: { ...DEFAULTS.fragments, ...stripUndefined(options.fragments ?? {}) },
    hashSeed: options.hashSeed ?? (Math.random() * 0x100000000) >>> 0,
    policy: { ...DEFAULTS.policy, ...stripUndefined(options.policy ?? {}) },
    lb: resolveLbOptions(options.lb),
    nat: resolveNat(options.nat),
  };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** struct dp_config bytes for resolved options. */
export function encodeConfig(o: ResolvedOptions): Uint8Array {
  const bytes = new Uint8Array(DP_CONFIG.size);
  encodeDpConfig({
    ctMaxTcp: o.conntrack.tcpEntries,
    ctMaxAny: o.conntrack.otherEntries,
    ctTimeoutTcp: o.conntrack.timeouts.tcp,
    ctTimeoutSyn: o.conntrack.timeouts.syn,
    ctTimeoutClose: o.conntrack.timeouts.close,
    ctTimeoutAny: o.conntrack.timeouts.other,
    ctFullPolicy: o.conntrack.whenFull === "drop" ? CtFullPolicy.CT_FULL_DROP : CtFullPolicy.CT_FULL_EVICT_LRU,
    hashSeed: o.hashSeed,
    fragMax: o.fragments.entries,
    fragTimeout: o.fragments.timeout,
  }, bytes);
  return bytes;
}
