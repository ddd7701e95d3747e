/**
 * The forwarder's conntrack snapshots on disk. One file, replaced atomically
 * (host/sys/atomic-file.ts) at every write:
 * - at start, right after the last run's snapshot was restored and before
 *   forwarding begins: from then on the file on disk is this run's, so a
 *   run killed before its first periodic write never leaves the previous
 *   run's snapshot to be restored a second time;
 * - periodically while forwarding (every `everyMs`, less a random jitter of
 *   up to `jitter` of it, so agents started together do not write together
 *   and no gap ever exceeds one interval): a SIGKILL loses at most one
 *   interval of conntrack changes;
 * - at stop.
 * Each write carries this run's id and the next sequence number, so a reader
 * can tell which run and which write it holds.
 */
import type { Datapath } from "../datapath.js";
import { newRunId, readSnapshotMeta, snapshotHorizon, takeSnapshot } from "../conntrack/snapshot.js";
import { writeFileAtomic } from "../sys/atomic-file.js";
import { monotonicSeconds } from "./clock.js";

export const DEFAULT_SNAPSHOT_EVERY_MS = 10_000;
export const DEFAULT_SNAPSHOT_JITTER = 0.1;

export interface SnapshotWritten {
  sequence: number;
  /** ms since the epoch. */
  writtenAt: number;
  /** Conntrack entries in it (connections, NAT mappings and fragments not counted). */
  entries: number;
  bytes: number;
}

export interface SnapshotWriterOptions {
  path: string;
  everyMs?: number;
  /** Fraction of the interval taken off at random (0..1). */
  jitter?: number;
  /**
   * How far ahead of the clock lifetimes may reach. At least the
   * configuration's largest timeout; more when entries restored from an
   * earlier run with longer timeouts may still be alive.
   */
  horizon?: number;
  random?: () => number;
}

export class SnapshotWriter {
  readonly runId = newRunId();
  readonly everyMs: number;
  private sequence = 0;
  private next = 0;
  private readonly jitter: number;
  private readonly random: () => number;
  private readonly horizon: number;

  constructor(private readonly dp: Datapath, private readonly opts: SnapshotWriterOptions) {
    this.everyMs = opts.everyMs ?? DEFAULT_SNAPSHOT_EVERY_MS;
    this.jitter = Math.min(1, Math.max(0, opts.jitter ?? DEFAULT_SNAPSHOT_JITTER));
    this.random = opts.random ?? Math.random;
    this.horizon = Math.max(snapshotHorizon(dp.options), opts.horizon ?? 0);
  }

  get path(): string {
    return this.opts.path;
  }

  /** Whether a periodic write is due at `nowMs` (wall clock). */
  due(nowMs = Date.now()): boolean {
    return nowMs >= this.next;
  }

  /** Takes and writes a snapshot now; schedules the next one. */
  write(nowMs = Date.now()): SnapshotWritten {
    const sequence = this.sequence++;
    // Scheduled first: a write that fails (disk full) is retried an interval later, not on every batch.
    this.next = nowMs + this.everyMs * (1 - this.jitter * this.random());
    const bytes = takeSnapshot(this.dp, { now: monotonicSeconds(), horizon: this.horizon, run: { id: this.runId, sequence } });
    writeFileAtomic(this.opts.path, bytes);
    let entries = 0;
    for (const t of ["tcp4", "any4", "tcp6", "any6"] as const) entries += this.dp.tableInfo(t).count;
    return { sequence, writtenAt: readSnapshotMeta(bytes)!.writtenAt, entries, bytes: bytes.length };
  }
}
