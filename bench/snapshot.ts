/**
 * Snapshot suite: what a periodic conntrack snapshot costs the forwarder.
 *
 * The worker writes a snapshot on its forwarding thread (host/forwarder/
 * snapshot-writer.ts): the tables are dumped, hashed (SHA-256), written to a
 * temporary file, fsync'd and renamed. Forwarding pauses for that long, once
 * per interval (default 10 s). The figure that matters is the pause as a
 * share of the interval: the forwarding time lost to snapshots. Goal: at most
 * 1% with 100,000 connections at the default interval (NOT MET is printed
 * when missed). A restart pays the restore once: parse, check every record,
 * store; shown beside it.
 *
 * The TCP table (1,000,000 entries) is filled with synthetic established
 * connections through the restore path (no packets), at 10,000, 100,000 and
 * 1,000,000 entries. Each operation runs 3 times; the median is shown.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Datapath } from "../host/datapath.js";
import { parseSnapshot, restoreSnapshot } from "../host/conntrack/snapshot.js";
import { SnapshotWriter } from "../host/forwarder/snapshot-writer.js";
import { CT_ENTRY, CT_TUPLE4, encodeCtEntry, encodeCtTuple4 } from "../host/generated/layout.js";
import { monotonicSeconds } from "../host/forwarder/clock.js";
import { num, printTable } from "./report.js";

const SIZES = [10_000, 100_000, 1_000_000];
const INTERVAL_MS = 10_000;
const GOAL_SHARE = 0.01;
const GOAL_AT = 100_000;
const REPS = 3;

function records(n: number, now: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const r = new Uint8Array(CT_TUPLE4.size + CT_ENTRY.size);
    encodeCtTuple4({ saddr: (10 << 24) | (i >>> 8), daddr: (10 << 24) | (200 << 16) | 2, sport: 1024 + (i & 0xff), dport: 80, nexthdr: 6, flags: 0 }, r);
    encodeCtEntry({
      rxPackets: 10n, rxBytes: 1000n, txPackets: 10n, txBytes: 1000n, lifetime: now + 21_600, backendId: 0, srcSecId: 0, revNatIndex: 0,
      txFlagsSeen: 0x18, rxFlagsSeen: 0x18, flags: 4, created: now,
    }, r, CT_TUPLE4.size);
    out.push(r);
  }
  return out;
}

/** Median of REPS timed runs of `f`, each after an untimed `setup`. */
async function median<T>(setup: () => Promise<T> | T, f: (x: T) => void): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < REPS; i++) {
    const x = await setup();
    const t0 = performance.now();
    f(x);
    times.push(performance.now() - t0);
  }
  return times.sort((a, b) => a - b)[Math.floor(REPS / 2)];
}

const TABLES = { conntrack: { tcpEntries: 1_000_000, otherEntries: 1024 } };

export async function runSnapshot(): Promise<unknown> {
  const dir = mkdtempSync(join(tmpdir(), "membrane-bench-snapshot-"));
  const results: Array<{ entries: number; bytes: number; writeMs: number; share: number; restoreMs: number }> = [];
  try {
    const now = monotonicSeconds();
    for (const n of SIZES) {
      const dp = await Datapath.create(TABLES);
      if (dp.restoreTable("tcp4", records(n, now)) !== n) throw new Error(`fill ${n} entries: the table took fewer`);
      const writer = new SnapshotWriter(dp, { path: join(dir, "conntrack.snap") });
      const writeMs = await median(() => undefined, () => writer.write());
      const bytes = readFileSync(join(dir, "conntrack.snap"));
      // Each restore into a fresh datapath, created outside the timed window.
      const restore = await median(() => Datapath.create(TABLES), (fresh) => {
        const restored = restoreSnapshot(fresh, parseSnapshot(bytes));
        if (restored.tcp4 !== n) throw new Error(`restore: ${restored.tcp4} of ${n}`);
      });
      results.push({ entries: n, bytes: bytes.length, writeMs, share: writeMs / INTERVAL_MS, restoreMs: restore });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const goal = results.find((r) => r.entries === GOAL_AT)!;
  const met = goal.share <= GOAL_SHARE;
  printTable("conntrack snapshot: forwarding pause per periodic write, and the restore at start", results.map((r) => ({
    entries: num(r.entries), "file MiB": (r.bytes / (1 << 20)).toFixed(1), "write ms (pause)": r.writeMs.toFixed(1),
    "share of a 10 s interval": `${(r.share * 100).toFixed(2)}%`, "restore ms": r.restoreMs.toFixed(1),
  })), [
    `goal: pause <= ${GOAL_SHARE * 100}% of the interval at ${num(GOAL_AT)} entries: ${(goal.share * 100).toFixed(2)}%${met ? "" : "  NOT MET"}`,
  ]);
  return { results, goal: { entries: GOAL_AT, share: goal.share, met } };
}
