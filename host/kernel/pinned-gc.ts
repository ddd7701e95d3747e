/**
 * Conntrack and NAT garbage collection on the pinned maps of an attached
 * kernel datapath: what the agent runs for the kernel path, since nothing in
 * the kernel expires conntrack entries by itself (LRU maps only evict when
 * full). Deletes entries whose lifetime passed on the kernel's monotonic
 * clock (the programs' clock when the clock map is 0), then the NAT pairs
 * whose conntrack entry is gone, on the adaptive schedule of
 * host/conntrack/gc-schedule.ts, with jitter on every interval.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { BpfMap } from "../bpf/map.js";
import { GcSchedule } from "../conntrack/gc-schedule.js";
import type { GcResult } from "../datapath.js";
import { CT_ENTRY, FRAG_ENTRY } from "../generated/layout.js";
import { KernelNat } from "./nat-tables.js";
import { TABLE_NAMES } from "../conntrack/tables.js";
import { KERNEL_MAP_OF } from "./maps.js";

export interface PinnedGcOptions {
  pinDir: string;
  /** Conntrack maps are LRU (evict when full): only the fixed schedule cares. */
  lru?: boolean;
  mode?: "adaptive" | "fixed";
  /** Seconds of the datapath clock; default the kernel's monotonic clock. */
  clock?: () => number;
  /** Each run's outcome (metrics, logs). */
  onRun?: (run: PinnedGcRun) => void;
  /** A run that threw (maps unpinned under us, ...); the schedule goes on. */
  onError?: (err: unknown) => void;
}

export interface PinnedGcRun {
  now: number;
  tables: GcResult[];
  natDeleted: number;
  /** Largest deleted/scanned over the conntrack tables (NaN: nothing scanned). */
  maxDeleteRatio: number;
  /** Seconds until the next run, before jitter. */
  nextSeconds: number;
  /** How long the run took, seconds (datapath_conntrack_gc_duration_seconds). */
  seconds: number;
}

export const monotonicSeconds = (): number => Number(process.hrtime.bigint() / 1_000_000_000n);

export class PinnedGc {
  readonly schedule: GcSchedule;
  readonly #maps = new Map<string, BpfMap>();
  #timer: NodeJS.Timeout | undefined;
  #stopped = true;

  constructor(private readonly opts: PinnedGcOptions) {
    this.schedule = new GcSchedule({ mode: opts.mode ?? "adaptive", lru: opts.lru ?? true });
  }

  #map(name: string): BpfMap {
    let m = this.#maps.get(name);
    if (!m) {
      m = BpfMap.openPinned(join(this.opts.pinDir, name));
      this.#maps.set(name, m);
    }
    return m;
  }

  /** One run now (or at `now` seconds of the datapath clock). */
  runOnce(now = (this.opts.clock ?? monotonicSeconds)()): PinnedGcRun {
    const startedAt = performance.now();
    const tables: GcResult[] = [];
    for (const table of TABLE_NAMES) {
      const name = KERNEL_MAP_OF[table];
      if (!existsSync(join(this.opts.pinDir, name))) continue;
      const map = this.#map(name);
      const at = table.startsWith("frag") ? FRAG_ENTRY.offsets.lifetime : CT_ENTRY.offsets.lifetime;
      const entries = map.dump();
      let deleted = 0;
      for (const [key, value] of entries) {
        const lifetime = new DataView(value.buffer, value.byteOffset, value.byteLength).getUint32(at, true);
        if (lifetime < now && map.delete(key)) deleted++;
      }
      tables.push({ table, deleted, scanned: entries.length });
    }
    // NAT pairs die with their conntrack entry (deleting a CT entry deletes its NAT pair).
    const hasNat = existsSync(join(this.opts.pinDir, "nat4")) && existsSync(join(this.opts.pinDir, "nat_stats"));
    const natDeleted = hasNat ? new KernelNat({ map: (n: string) => this.#map(n) }).gc(now) : 0;
    const ratios = tables.filter((t) => !t.table.startsWith("frag") && t.scanned > 0).map((t) => t.deleted / t.scanned);
    const maxDeleteRatio = ratios.length ? Math.max(...ratios) : NaN;
    const nextSeconds = this.schedule.next(maxDeleteRatio);
    const run = { now, tables, natDeleted, maxDeleteRatio, nextSeconds, seconds: (performance.now() - startedAt) / 1000 };
    this.opts.onRun?.(run);
    return run;
  }

  /** Runs on the schedule until stop(): first after the current interval, each interval +-10% jitter. */
  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#arm(this.schedule.interval);
  }

  #arm(seconds: number): void {
    if (this.#stopped) return;
    const jitter = 0.9 + Math.random() * 0.2; // real randomness: timing only, never a datapath decision
    this.#timer = setTimeout(() => {
      try {
        this.runOnce();
      } catch (err) {
        this.opts.onError?.(err);
      }
      this.#arm(this.schedule.interval);
    }, seconds * 1000 * jitter);
    this.#timer.unref();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** stop() and close the map fds. */
  close(): void {
    this.stop();
    for (const m of this.#maps.values()) m.close();
    this.#maps.clear();
  }
}
