/**
 * Conntrack suite: what tracking costs per packet, against parsing alone.
 *
 * Every timed iteration is one `dp.process(batch, NOW)` (or `dp.parseOnly`)
 * over a batch of 256 packets; ns/packet is the task's mean time / 256. The
 * IPv4 and IPv6 TCP tables hold 1,000,000 entries each and are prefilled to
 * 50% (500,000 open flows) before anything is timed. NOW never changes and the
 * timeouts are long, so no entry expires during the run.
 *
 * Scenarios, per family:
 *  - parse only: the parser over 256 packets of open flows; the floor.
 *  - CT hit (established): 256 packets of open flows, a different 256 every
 *    iteration, walked in scattered order over all 500,000 entries. Lookups
 *    reach cold memory, as they do with many active flows.
 *  - CT hit (same 256 flows): one batch repeated, so its entries stay in
 *    cache. The gap to the row above is the cost of memory, not of code.
 *  - CT miss + create: SYNs of flows never seen before, so every packet looks
 *    up, misses and inserts. After each iteration (untimed) the 256 new
 *    entries are deleted, keeping the table at 50% rather than drifting up;
 *    the fill at start and end is printed to show it.
 *
 * Refilling batches and deleting entries happen in tinybench's beforeEach /
 * afterEach hooks, outside the timed window. Each scenario is checked before
 * timing (every packet gets the expected verdict) and after (table counters:
 * no creations for hits, one per packet for misses, no drops or evictions).
 */
import { Bench, type FnOptions } from "tinybench";
import { Datapath } from "../host/datapath.js";
import type { PacketBatch } from "../host/wasm/batch.js";
import type { CtOutcome } from "../host/verdict.js";
import { FlowSet, MAX_FLOWS, scattered, type Family } from "./flows.js";
import { num, printTable } from "./report.js";

const BATCH = 256;
const TABLE_ENTRIES = 1_000_000;
const OPEN_FLOWS = TABLE_ENTRIES / 2;
/** The datapath clock, in seconds; constant so that nothing expires. */
const NOW = 1000;
/** Per task: 1 s of timed iterations after 250 ms of warmup keeps the suite near a minute. */
const BENCH_OPTIONS = { time: 1000, warmupTime: 250, timestampProvider: "hrtimeNow", throws: true } as const;

export interface ConntrackRow {
  scenario: string;
  family: `IPv${Family}`;
  nsPerPacket: number;
  mpps: number;
  /** nsPerPacket over the same family's "parse only". */
  vsParse: number;
  /** Relative margin of error of the mean, percent. */
  rmePercent: number;
  p50NsPerPacket: number;
  iterations: number;
  /** Entries / capacity of the family's TCP table before warmup and after the last iteration. */
  fillStart: number;
  fillEnd: number;
  /** Packets processed in all iterations, warmup included, and what the table counters say about them. */
  packets: number;
  created: number;
  evicted: number;
  dropped: number;
}

export interface ConntrackResult {
  batchSize: number;
  tableEntries: number;
  openFlows: number;
  rows: ConntrackRow[];
}

export interface Timing {
  meanMs: number;
  p50Ms: number;
  rme: number;
  iterations: number;
}

/** Runs one task in its own Bench, so table state can be read right before and after it. */
export async function measure(name: string, fn: () => void, hooks: FnOptions = {}): Promise<Timing> {
  const bench = new Bench({ name, ...BENCH_OPTIONS });
  // async: false matters: otherwise add() calls fn once, outside any hook, to see whether it
  // returns a promise, and for the miss scenario that untracked call creates entries nobody deletes.
  bench.add(name, fn, { ...hooks, async: false });
  const [task] = await bench.run();
  const r = task!.result;
  if (r.state !== "completed") throw new Error(`${name}: benchmark ended ${r.state}${"error" in r ? `: ${r.error.message}` : ""}`);
  return { meanMs: r.latency.mean, p50Ms: r.latency.p50, rme: r.latency.rme, iterations: r.latency.samplesCount };
}

/** Throws unless every packet of the processed batch passed with `outcome`. */
export function expectAll(batch: PacketBatch, outcome: CtOutcome, what: string): void {
  for (let i = 0; i < batch.length; i++) {
    const v = batch.result(i);
    if (v.verdict !== "pass" || v.ct !== outcome) {
      throw new Error(`${what}: packet ${i} got ${v.verdict}/${v.ct}${v.dropReason ? ` (${v.dropReason})` : ""}, expected pass/${outcome}`);
    }
  }
}

function dropTotal(dp: Datapath): number {
  return dp.counters().drops.reduce((n, d) => n + d.packets, 0);
}

class FamilyBench {
  private readonly flows: FlowSet;
  readonly rows: ConntrackRow[] = [];
  private parseNs = 0;

  constructor(private readonly dp: Datapath, readonly family: Family) {
    this.flows = new FlowSet(family);
  }

  private fill(): number {
    const t = this.dp.tableInfo(this.flows.table);
    return t.count / t.capacity;
  }

  /**
   * Times `fn` with `hooks` and records a row. `packets` counts what went
   * through process(); the caller's check() then judges the counter deltas.
   */
  private async scenario(
    scenario: string,
    fn: () => void,
    hooks: FnOptions,
    packets: () => number,
    check: (d: { created: number; evicted: number; dropped: number; packets: number }) => string | undefined,
  ): Promise<void> {
    const table = this.flows.table;
    const stats0 = this.dp.counters().tables[table];
    const drops0 = dropTotal(this.dp);
    const fillStart = this.fill();
    const t = await measure(`${scenario} IPv${this.family}`, fn, hooks);
    const fillEnd = this.fill();
    const stats1 = this.dp.counters().tables[table];
    const d = {
      created: Number(stats1.created - stats0.created),
      evicted: Number(stats1.evicted - stats0.evicted),
      dropped: dropTotal(this.dp) - drops0,
      packets: packets(),
    };
    const problem = check(d);
    if (problem) throw new Error(`${scenario} IPv${this.family}: ${problem} (${JSON.stringify(d)})`);

    const nsPerPacket = (t.meanMs * 1e6) / BATCH;
    if (scenario === "parse only") this.parseNs = nsPerPacket;
    this.rows.push({
      scenario,
      family: `IPv${this.family}`,
      nsPerPacket,
      mpps: 1000 / nsPerPacket,
      vsParse: this.parseNs > 0 ? nsPerPacket / this.parseNs : NaN,
      rmePercent: t.rme,
      p50NsPerPacket: (t.p50Ms * 1e6) / BATCH,
      iterations: t.iterations,
      fillStart,
      fillEnd,
      ...d,
    });
  }

  async run(): Promise<void> {
    const { dp, flows } = this;
    const started = performance.now();
    flows.open(dp, dp.createBatch(BATCH, { bufferSize: 256 }), OPEN_FLOWS, NOW);
    console.log(`  IPv${this.family}: opened ${num(OPEN_FLOWS)} flows in ${num((performance.now() - started) / 1000, 1)} s; table ${num(this.fill() * 100, 1)}% full`);

    // Packets of open flows, walked in scattered order (see flows.ts); `cursor` moves on every iteration.
    let cursor = 0;
    const openFlow = (k: number) => scattered(cursor + k, OPEN_FLOWS);
    let processed = 0;
    const count = (batch: PacketBatch) => () => { processed += batch.length; };
    const noDrops = (d: { dropped: number; evicted: number }) =>
      d.dropped !== 0 ? "packets were dropped" : d.evicted !== 0 ? "entries were evicted" : undefined;

    // 1. parse only
    const parseBatch = dp.createBatch(BATCH);
    flows.fill(parseBatch, "ack", openFlow);
    const trackable = dp.parseOnly(parseBatch);
    if (trackable !== BATCH) throw new Error(`parse only IPv${this.family}: ${trackable} of ${BATCH} packets parsed as trackable`);
    await this.scenario("parse only", () => { dp.parseOnly(parseBatch); }, {}, () => 0,
      (d) => (d.created !== 0 || d.dropped !== 0 ? "parsing changed the tables or counters" : undefined));

    // 2. CT hit over all open flows, a fresh 256 each iteration.
    const hitBatch = dp.createBatch(BATCH);
    const refillHits = () => { flows.fill(hitBatch, "ack", openFlow); cursor += BATCH; };
    refillHits();
    dp.process(hitBatch, NOW);
    expectAll(hitBatch, "established", `CT hit IPv${this.family}`);
    processed = 0;
    await this.scenario("CT hit (established)", () => dp.process(hitBatch, NOW),
      { beforeEach: refillHits, afterEach: count(hitBatch) }, () => processed,
      (d) => (d.created !== 0 ? "some packets missed and created entries" : noDrops(d)));

    // 3. CT hit, the same 256 flows every iteration (entries stay cache-resident).
    const warmBatch = dp.createBatch(BATCH);
    flows.fill(warmBatch, "ack", openFlow);
    dp.process(warmBatch, NOW);
    expectAll(warmBatch, "established", `CT hit (same flows) IPv${this.family}`);
    processed = 0;
    await this.scenario("CT hit (same 256 flows)", () => dp.process(warmBatch, NOW),
      { afterEach: count(warmBatch) }, () => processed,
      (d) => (d.created !== 0 ? "some packets missed and created entries" : noDrops(d)));

    // 4. CT miss + create: SYNs of never-seen flows (ids above the open ones), deleted again after each iteration.
    const missBatch = dp.createBatch(BATCH);
    let nextNew = OPEN_FLOWS;
    let batchStart = nextNew;
    let notDeleted = 0;
    const newFlow = (k: number) => batchStart + k;
    const refillNew = () => {
      if (nextNew + BATCH > MAX_FLOWS) nextNew = OPEN_FLOWS; // ids recycle safely: their entries were deleted
      batchStart = nextNew;
      nextNew += BATCH;
      flows.fill(missBatch, "syn", newFlow);
    };
    const deleteNew = () => {
      for (let k = 0; k < missBatch.length; k++) if (!dp.deleteEntry(flows.table, flows.key(newFlow(k)))) notDeleted++;
    };
    const countNew = count(missBatch);
    refillNew();
    dp.process(missBatch, NOW);
    expectAll(missBatch, "new", `CT miss IPv${this.family}`);
    deleteNew();
    processed = 0;
    notDeleted = 0;
    await this.scenario("CT miss + create", () => dp.process(missBatch, NOW),
      { beforeEach: refillNew, afterEach: () => { countNew(); deleteNew(); } }, () => processed,
      (d) => d.created !== d.packets ? "not every packet created an entry"
        : notDeleted !== 0 ? `${notDeleted} created entries were not found for deletion`
        : noDrops(d));
  }
}

export async function runConntrack(): Promise<ConntrackResult> {
  const dp = await Datapath.create({
    conntrack: { tcpEntries: TABLE_ENTRIES, otherEntries: 262_144, timeouts: { tcp: 1_000_000, syn: 1_000_000 } },
  });
  const rows: ConntrackRow[] = [];
  for (const family of [4, 6] as const) {
    const fb = new FamilyBench(dp, family);
    await fb.run();
    rows.push(...fb.rows);
  }
  const result: ConntrackResult = { batchSize: BATCH, tableEntries: TABLE_ENTRIES, openFlows: OPEN_FLOWS, rows };
  print(result);
  return result;
}

function print(r: ConntrackResult): void {
  const pct = (f: number) => `${num(f * 100, 1)}%`;
  printTable(
    `Conntrack, batch of ${r.batchSize}, TCP tables of ${num(r.tableEntries)} entries prefilled with ${num(r.openFlows)} flows`,
    r.rows.map((row) => ({
      scenario: row.scenario,
      family: row.family,
      "ns/packet": num(row.nsPerPacket, 1),
      Mpps: num(row.mpps, 2),
      "x parse": `${num(row.vsParse, 2)}x`,
      "±rme": `${num(row.rmePercent, 1)}%`,
      iterations: num(row.iterations),
      "fill start -> end": `${pct(row.fillStart)} -> ${pct(row.fillEnd)}`,
    })),
    [
      "ns/packet = mean time of one process() (or parseOnly()) call / 256; Mpps = 1000 / ns/packet, one core.",
      "CT hit (established): a different 256 of the 500,000 open flows each iteration, in scattered order (cache-cold lookups).",
      "CT hit (same 256 flows): one batch repeated, its entries cache-resident; an upper bound, not a forecast.",
      "CT miss + create: new flows each iteration; their entries are deleted untimed afterwards, so the fill stays at 50%.",
      "  Deleted slots go to the table's free list and are reused first, so inserts write recently touched slots.",
      "Hooks that refill batches and delete entries run outside the timed window.",
    ],
  );
}
