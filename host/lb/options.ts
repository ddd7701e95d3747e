/**
 * LB table sizes and selection seed (the `lb` key of DatapathOptions):
 * defaults, validation and the encoding into struct lb_config.
 */
import { InvalidInputError } from "../errors.js";
import { LB_CONFIG, encodeLbConfig } from "../generated/layout.js";
import { integerInRange } from "../config-values.js";

/** Maglev table sizes Cilium accepts (primes); 16381 is its default. */
export const MAGLEV_PRIMES = [251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071] as const;

export interface LbOptions {
  /** Entries per services table (per family), master and backend slots included (65536, Cilium 1.5's LB map size). */
  services?: number;
  /** Entries per backends table (per family) (65536). */
  backends?: number;
  /** Entries per reverse-NAT table (per family); indexes are 16-bit (65535). */
  revNat?: number;
  /** Maglev table size per service, one of MAGLEV_PRIMES (16381). */
  maglevM?: number;
  /** How many services may use maglev at once: rows of the Maglev table (32). */
  maglevRows?: number;
  /**
   * Seeds the flow hash that picks backends. Fixed by default, so every node
   * (and both datapaths) gives a flow the same Maglev backend.
   */
  hashSeed?: number;
}

export type ResolvedLbOptions = Required<LbOptions>;

export const LB_DEFAULTS: ResolvedLbOptions = {
  services: 65536,
  backends: 65536,
  revNat: 65535,
  maglevM: 16381,
  maglevRows: 32,
  hashSeed: 0x6d626c62,
};

/** Validates the `lb` options object (throwing InvalidInputError naming the key) and fills in defaults. */
export function resolveLbOptions(value: unknown, path = "lb"): ResolvedLbOptions {
  if (value === undefined) return { ...LB_DEFAULTS };
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new InvalidInputError(`${path}: expected an object, got ${JSON.stringify(value)}`);
  }
  const o = value as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!(key in LB_DEFAULTS)) throw new InvalidInputError(`${path}.${key}: unknown key (allowed: ${Object.keys(LB_DEFAULTS).join(", ")})`);
  }
  const out = { ...LB_DEFAULTS };
  for (const [key, v] of Object.entries(o)) {
    if (v === undefined) continue;
    const at = `${path}.${key}`;
    if (key === "maglevM") {
      if (!MAGLEV_PRIMES.includes(v as (typeof MAGLEV_PRIMES)[number])) {
        throw new InvalidInputError(`${at}: expected one of ${MAGLEV_PRIMES.join(", ")} (the primes Cilium allows), got ${JSON.stringify(v)}`);
      }
    } else if (key === "revNat") integerInRange(v, 1, 65535, at);
    else if (key === "maglevRows") integerInRange(v, 0, 4096, at);
    else if (key === "hashSeed") integerInRange(v, 0, 0xffffffff, at);
    else integerInRange(v, 1, 1 << 24, at);
    (out as Record<string, number>)[key] = v as number;
  }
  if (out.maglevM * out.maglevRows > 1 << 26) {
    throw new InvalidInputError(`${path}: maglevM x maglevRows = ${out.maglevM * out.maglevRows} entries; at most ${1 << 26} (256 MiB)`);
  }
  return out;
}

/** struct lb_config bytes. */
export function encodeLbOptions(o: ResolvedLbOptions): Uint8Array {
  const bytes = new Uint8Array(LB_CONFIG.size);
  encodeLbConfig({
    maxServices: o.services, maxBackends: o.backends, maxRevNat: o.revNat, maglevM: o.maglevM, maglevRows: o.maglevRows,
    hashSeed: o.hashSeed,
  }, bytes);
  return bytes;
}

/** max_entries of the kernel's LB maps, as the Wasm tables are sized. */
export function lbMapSizes(o: ResolvedLbOptions): Record<string, number> {
  return {
    lb4_services: o.services, lb6_services: o.services, lb4_backends: o.backends, lb6_backends: o.backends,
    lb4_reverse_nat: o.revNat, lb6_reverse_nat: o.revNat, lb_maglev: Math.max(1, o.maglevM * o.maglevRows),
  };
}
