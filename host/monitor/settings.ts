/**
 * What a monitor asks the datapath for: which kinds of event, one trace
 * event in `sample`, and at most `ratePerSecond` events (the rate cap). The
 * datapath sources (host/wasm/monitor-ring.ts, host/kernel/monitor-ring.ts)
 * turn it into their monitor_config.
 */
import { InvalidInputError } from "../errors.js";
import { MonitorFlags, MonitorType } from "../generated/layout.js";

export const MONITOR_TYPES = ["drop", "trace", "policy-verdict"] as const;
export type MonitorTypeName = (typeof MONITOR_TYPES)[number];

export const TYPE_CODE: Readonly<Record<MonitorTypeName, number>> = {
  drop: MonitorType.MONITOR_DROP,
  trace: MonitorType.MONITOR_TRACE,
  "policy-verdict": MonitorType.MONITOR_POLICY_VERDICT,
};
export const TYPE_NAME: Readonly<Record<number, MonitorTypeName>> = Object.fromEntries(Object.entries(TYPE_CODE).map(([k, v]) => [v, k as MonitorTypeName]));
const TYPE_FLAG: Readonly<Record<MonitorTypeName, number>> = {
  drop: MonitorFlags.MONITOR_F_DROP,
  trace: MonitorFlags.MONITOR_F_TRACE,
  "policy-verdict": MonitorFlags.MONITOR_F_POLICY,
};

export interface MonitorSettings {
  types: readonly MonitorTypeName[];
  /** Trace events: one in `sample` (1: every one). */
  sample: number;
  /** Events per second at most, over all kinds; the rest are counted as lost. */
  ratePerSecond: number;
}

/** Defaults: drops and policy verdicts, every trace event if asked for, 1000 events/s. */
export const DEFAULT_MONITOR_SETTINGS: MonitorSettings = { types: ["drop", "policy-verdict"], sample: 1, ratePerSecond: 1000 };

export function modeOf(types: readonly MonitorTypeName[]): number {
  return types.reduce((m, t) => m | TYPE_FLAG[t], 0);
}

/** Checks settings from a flag, an API query or a message: a bad one is refused whole. */
export function checkMonitorSettings(s: { types?: readonly string[]; sample?: number; ratePerSecond?: number }, what = "monitor"): MonitorSettings {
  const types = s.types ?? DEFAULT_MONITOR_SETTINGS.types;
  for (const t of types) {
    if (!(MONITOR_TYPES as readonly string[]).includes(t)) throw new InvalidInputError(`${what}: type ${JSON.stringify(t)} is not one of ${MONITOR_TYPES.join(", ")}`);
  }
  const sample = s.sample ?? 1;
  if (!Number.isInteger(sample) || sample < 1 || sample > 1_000_000) throw new InvalidInputError(`${what}: sample must be 1..1000000 (one trace event in N), got ${sample}`);
  const rate = s.ratePerSecond ?? DEFAULT_MONITOR_SETTINGS.ratePerSecond;
  if (!Number.isInteger(rate) || rate < 1 || rate > 10_000_000) throw new InvalidInputError(`${what}: rate must be 1..10000000 events per second, got ${rate}`);
  return { types: [...new Set(types as MonitorTypeName[])], sample, ratePerSecond: rate };
}

/** What several monitors together need: every kind any asks for, the finest sampling, the highest rate. */
export function unionSettings(all: readonly MonitorSettings[]): MonitorSettings | undefined {
  if (all.length === 0) return undefined;
  return {
    types: [...new Set(all.flatMap((s) => s.types))],
    sample: Math.min(...all.map((s) => s.sample)),
    ratePerSecond: Math.max(...all.map((s) => s.ratePerSecond)),
  };
}
