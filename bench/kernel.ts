/**
 * Kernel suite: the conntrack fast path in Wasm and in the kernel BPF program
 * (bpf/bpf_test.c, run with BPF_PROG_TEST_RUN), side by side on the same
 * packets and the same table contents.
 *
 * Setup, per family: a Wasm datapath opens 500,000 flows (SYNs, egress, at
 * NOW) in a TCP table of 1,000,000 entries, exactly as the conntrack suite
 * does. Its table is then dumped and every record (struct ct_tuple + struct
 * ct_entry bytes, the layouts both sides share) is written into the kernel's
 * ct_tcp4/ct_tcp6 map, sized to 1,000,000 as well. So both tables hold the
 * same 500,000 entries, with lifetimes ~10^6 s past NOW; the kernel's clock
 * map holds the same NOW, its config map the same options.
 *
 * Scenarios (parse-only has no kernel counterpart and is left out):
 *  - CT hit, hot: the same 256 open flows (ACKs, egress).
 *      Wasm: one batch of those 256 repeated (the conntrack suite's "same 256
 *      flows" method). Kernel: each of the 256 packets test-run with
 *      repeat=HOT_REPEAT; the figure is the mean over the 256 of the kernel's
 *      per-repetition average. The kernel figure is a single flow looped, so
 *      it is even hotter (entry in L1, branches trained) than Wasm's 256.
 *  - CT hit, cold: open flows walked in scattered order over all 500,000.
 *      Wasm: a different 256 each iteration (the conntrack suite's method).
 *      Kernel: the first COLD_PACKETS flows of the same walk, repeat=1 each,
 *      mean of durationNs.
 *  - CT miss + create: SYNs of never-seen flows. Wasm: as the conntrack suite
 *      (new 256 each iteration, deleted untimed after). Kernel: MISS_PACKETS
 *      new flows, repeat=1 each (with repeat>1 only the first run would miss),
 *      each entry deleted through the map right after its run (untimed: the
 *      kernel times only the program).
 *
 * The kernel's own timing overhead: durationNs is (clock after the last run -
 * clock before the first) / repeat, so it includes the clock reads and the
 * test loop's call into the program; with repeat=1 that is ~100 ns here. It
 * is measured with a trivial tc program (`return 0;`, compiled here with
 * clang) test-run on the same frame with the same repeat, right after each
 * real run; "kernel net" = raw - that. Raw, overhead and net are all printed,
 * with means (as asked) and medians (skb test runs are preemptible, so a busy
 * machine puts outliers into repeat=1 means).
 *
 * Cold bracket: a repeat=1 run pays for starting cold after the trip through
 * user space, whatever the flow. So the 256 hot flows are also run at
 * repeat=1: how much slower that is than the looped figure ("lone-run
 * penalty"), and how much cold flows add on top ("cold extra"), show what
 * repeat=1 can resolve. The kernel's cold cost in a busy datapath lies between
 * the hot looped figure (floor) and the cold repeat=1 figure (ceiling); the
 * footnote states the cold verdict against the asked-for figure and against
 * that bracket.
 *
 * Every kernel run is checked: return value TC_ACT_OK and the decision in
 * skb->cb (pass, expected ct result, egress, the family's TCP table). Hot runs
 * additionally check the entry's tx_packets grew by exactly the repeat count
 * (every repetition was an established hit), miss runs that the created entry
 * existed (deleted). The kernel table is counted at the end: still 500,000.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { Datapath } from "../host/datapath.js";
import type { PacketBatch } from "../host/wasm/batch.js";
import { resolveOptions, type DatapathOptions } from "../host/config.js";
import { BpfObject } from "../host/bpf/object.js";
import type { BpfMap } from "../host/bpf/map.js";
import type { BpfProgram } from "../host/bpf/program.js";
import { decodeSkbCtx, encodeSkbCtx } from "../host/bpf/skb-ctx.js";
import { clangArgs } from "../host/tools/build-bpf.js";
import { CtDir, CtResult, CtTable, Verdict, decodeCtEntry } from "../host/generated/layout.js";
import { expectAll, measure, type Timing } from "./conntrack.js";
import { FlowSet, MAX_FLOWS, scattered, type Family, type Segment } from "./flows.js";
import { num, printTable } from "./report.js";
import { ethFrame, kernelUnavailable, loadBenchKernel } from "./kernel-setup.js";

const BATCH = 256;
const TABLE_ENTRIES = 1_000_000;
const OPEN_FLOWS = TABLE_ENTRIES / 2;
/** The datapath clock, seconds; the same in Wasm and in the kernel's clock map. Nonzero: 0 means "kernel clock". */
const NOW = 1000;
/** As the conntrack suite: long timeouts, so nothing expires. */
const OPTIONS: DatapathOptions = {
  conntrack: { tcpEntries: TABLE_ENTRIES, otherEntries: 262_144, timeouts: { tcp: 1_000_000, syn: 1_000_000 } },
};
const HOT_REPEAT = 2000;
/** Cold flows, each run once; as many repeat=1 runs of the hot flows are interleaved with them. */
const COLD_PACKETS = 24_576;
const MISS_PACKETS = 16_384;
/** Where the cold walk starts (past the hot flows' positions in the same walk). */
const COLD_START = BATCH;
const TC_ACT_OK = 0;

const NOP_SOURCE = `#include <linux/bpf.h>
__attribute__((section("tc"), used)) int nop(struct __sk_buff *skb) { return 0; }
char LICENSE[] __attribute__((section("license"), used)) = "GPL";
`;

/** Kernel durations (ns per repetition) of one scenario: the real program's and the trivial one's, run for run. */
interface Runs {
  raw: number[];
  nop: number[];
}

export interface KernelRow {
  scenario: string;
  family: `IPv${Family}`;
  wasmNsPerPacket: number;
  wasmRmePercent: number;
  wasmIterations: number;
  /** Kernel durationNs over the runs (per repetition), mean and median. */
  kernelRawNs: number;
  kernelRawP50Ns: number;
  /** The trivial program's durationNs under the same conditions. */
  overheadNs: number;
  overheadP50Ns: number;
  /** Mean raw - mean overhead; and median raw - median overhead. */
  kernelNetNs: number;
  kernelNetP50Ns: number;
  repeat: number;
  kernelRuns: number;
  /** Wasm ns/packet over the kernel's (mean) net, (mean) raw and median net. */
  ratioNet: number;
  ratioRaw: number;
  ratioNetP50: number;
}

/**
 * What test runs can say about the kernel's cold cost. Medians throughout
 * (repeat=1 means carry preemption outliers); all figures net of the overhead.
 */
export interface MethodCheck {
  family: `IPv${Family}`;
  /** Median over the 256 hot flows of (raw - overhead) at repeat=HOT_REPEAT: a lower bound for any kernel figure. */
  hotLoopNetNs: number;
  /** The same 256 hot flows at repeat=1 (interleaved with the cold runs): median raw - median overhead. */
  hotLoneNetNs: number;
  hotLoneRuns: number;
  /** The cold scenario's median net (repeat=1): the upper end of the bracket. */
  coldNetNs: number;
  /** hotLoneNetNs - hotLoopNetNs: what running alone, one packet per syscall, adds for the very same flows. */
  lonePenaltyNs: number;
  /** coldNetNs - hotLoneNetNs: what cold flows add over hot ones when both run alone; ~0 means lone runs cannot see it. */
  coldExtraNs: number;
  wasmColdNs: number;
  /** Where Wasm's cold figure falls against [hotLoopNetNs, coldNetNs]. */
  wasmVsBracket: "below" | "within" | "above";
}

interface GoalVerdict {
  /** Wasm <= kernel mean net, both families. */
  metVsNet: boolean;
  /** Wasm <= kernel mean raw (overhead counted as kernel cost), both families. */
  metVsRaw: boolean;
  /** Wasm <= kernel median net, both families. */
  metVsNetP50: boolean;
}

export type KernelResult =
  | { skipped: string }
  | {
      tableEntries: number;
      openFlows: number;
      hotRepeat: number;
      /** 1-minute load average before and after the suite: other work on the machine shows up as noise. */
      loadAverage: { start: number; end: number };
      rows: KernelRow[];
      methodCheck: MethodCheck[];
      goal: { hot: GoalVerdict; cold: GoalVerdict };
    };

function missing(): string | undefined {
  const why = kernelUnavailable();
  if (why) return why;
  if (spawnSync("clang", ["--version"], { stdio: "ignore" }).status !== 0) {
    return "clang not found (needed to compile the trivial program that measures the test-run overhead)";
  }
  return undefined;
}

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Compiles and loads `return 0;` as a tc program. */
export function loadNop(): BpfObject {
  const dir = mkdtempSync(join(tmpdir(), "membrane-bench-"));
  try {
    const src = join(dir, "nop.c");
    const out = join(dir, "nop.o");
    writeFileSync(src, NOP_SOURCE);
    execFileSync("clang", clangArgs(src, out), { stdio: "pipe" });
    return BpfObject.load(readFileSync(out), { name: "bench_nop" });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** skb->cb[0] in: the direction. The program overwrites cb[0] with its decision (verdict in the low byte). */
const CTX_EGRESS = encodeSkbCtx({ cb: [CtDir.CT_EGRESS] });

class KernelFamily {
  private readonly flows: FlowSet;
  private readonly map: BpfMap;
  private readonly table: number;

  constructor(object: BpfObject, private readonly prog: BpfProgram, private readonly nop: BpfProgram, readonly family: Family) {
    this.flows = new FlowSet(family);
    this.map = object.map(family === 4 ? "ct_tcp4" : "ct_tcp6");
    this.table = family === 4 ? CtTable.CT_TABLE_TCP4 : CtTable.CT_TABLE_TCP6;
  }

  /** Copies the Wasm table's records (key bytes, then value bytes) into the kernel map; checks a few against the flow keys. */
  prefill(records: Uint8Array[], sample: number[]): void {
    const k = this.map.keySize;
    for (const r of records) this.map.update(r.slice(0, k), r.slice(k), "noexist");
    for (const i of sample) {
      const v = this.map.lookup(this.flows.key(i));
      if (!v) throw new Error(`kernel IPv${this.family}: flow ${i} is not in ${this.map.name} after the prefill`);
      const e = decodeCtEntry(v);
      if (e.lifetime <= NOW + 1000) throw new Error(`kernel IPv${this.family}: flow ${i} has lifetime ${e.lifetime}, not far past NOW=${NOW}`);
    }
  }

  count(): number {
    return this.map.dump(4096).length;
  }

  private frame(flow: number, segment: Segment): Uint8Array {
    return ethFrame(this.flows.packet(flow, segment), this.family);
  }

  /** One real run (checked) and one trivial run on the same frame with the same repeat. */
  private runPair(frame: Uint8Array, repeat: number, expect: number, what: string, runs: Runs): void {
    const r = this.prog.testRun({ data: frame, ctx: CTX_EGRESS, repeat });
    const cb = decodeSkbCtx(r.ctx!).cb;
    const want0 = Verdict.VERDICT_PASS | (expect << 16) | (CtDir.CT_EGRESS << 24);
    if (r.retval !== TC_ACT_OK || cb[0] !== want0 || cb[1] !== this.table) {
      throw new Error(`kernel ${what} IPv${this.family}: retval ${r.retval}, cb[0]=0x${cb[0]!.toString(16)} cb[1]=${cb[1]}; ` +
        `expected retval ${TC_ACT_OK}, cb[0]=0x${want0.toString(16)} cb[1]=${this.table}`);
    }
    const n = this.nop.testRun({ data: frame, ctx: CTX_EGRESS, repeat });
    if (n.retval !== 0) throw new Error(`trivial program returned ${n.retval}`);
    runs.raw.push(r.durationNs);
    runs.nop.push(n.durationNs);
  }

  /**
   * Each hot flow test-run with repeat=HOT_REPEAT. After the first repetition
   * cb[0] holds the decision, whose low byte (VERDICT_PASS = 0) reads as
   * CT_EGRESS = 0 again: every repetition is the same egress packet. Checked
   * through tx_packets, which must grow by exactly the repeat count.
   */
  hot(flowAt: (k: number) => number): Runs {
    const runs: Runs = { raw: [], nop: [] };
    for (let k = 0; k < BATCH; k++) {
      const flow = flowAt(k);
      const frame = this.frame(flow, "ack");
      const key = this.flows.key(flow).slice();
      const before = decodeCtEntry(this.map.lookup(key)!).txPackets;
      this.runPair(frame, HOT_REPEAT, CtResult.CT_ESTABLISHED, "CT hit (hot)", runs);
      const after = decodeCtEntry(this.map.lookup(key)!).txPackets;
      if (after - before !== BigInt(HOT_REPEAT)) {
        throw new Error(`kernel CT hit (hot) IPv${this.family}: flow ${flow} tx_packets grew by ${after - before}, expected ${HOT_REPEAT}`);
      }
    }
    return runs;
  }

  /**
   * COLD_PACKETS flows of the cold walk, one run each (repeat=1). Interleaved
   * with them, packet for packet, the 256 hot flows in turn, also at repeat=1,
   * so that both see the same conditions (machine load drifts): the hot ones
   * say what a lone run costs when the entry is as warm as it gets between
   * syscalls.
   */
  cold(coldAt: (j: number) => number, hotAt: (k: number) => number): { cold: Runs; hotLone: Runs } {
    const cold: Runs = { raw: [], nop: [] };
    const hotLone: Runs = { raw: [], nop: [] };
    for (let j = 0; j < COLD_PACKETS; j++) {
      this.runPair(this.frame(coldAt(j), "ack"), 1, CtResult.CT_ESTABLISHED, "CT hit (cold)", cold);
      this.runPair(this.frame(hotAt(j % BATCH), "ack"), 1, CtResult.CT_ESTABLISHED, "CT hit (hot, repeat 1)", hotLone);
    }
    return { cold, hotLone };
  }

  miss(firstNew: number): Runs {
    const runs: Runs = { raw: [], nop: [] };
    for (let j = 0; j < MISS_PACKETS; j++) {
      const flow = firstNew + j;
      this.runPair(this.frame(flow, "syn"), 1, CtResult.CT_NEW, "CT miss + create", runs);
      if (!this.map.delete(this.flows.key(flow))) {
        throw new Error(`kernel CT miss IPv${this.family}: the entry of new flow ${flow} was not found for deletion`);
      }
    }
    return runs;
  }
}

/** The Wasm side, measured as the conntrack suite measures it (tinybench, process() of 256, mean / 256). */
class WasmFamily {
  readonly flows: FlowSet;

  constructor(private readonly dp: Datapath, readonly family: Family) {
    this.flows = new FlowSet(family);
  }

  open(): void {
    this.flows.open(this.dp, this.dp.createBatch(BATCH, { bufferSize: 256 }), OPEN_FLOWS, NOW);
  }

  records(): Uint8Array[] {
    return this.dp.dumpTable(this.flows.table);
  }

  private created(): bigint {
    return this.dp.counters().tables[this.flows.table].created;
  }

  private async timed(what: string, batch: PacketBatch, hooks: { beforeEach?: () => void; afterEach?: () => void },
    expectCreated: (iterations: number) => boolean): Promise<Timing> {
    const c0 = this.created();
    let iterations = 0; // warmup included, as the hooks run for warmup iterations too
    const t = await measure(`${what} IPv${this.family} (wasm)`, () => this.dp.process(batch, NOW), {
      beforeEach: hooks.beforeEach,
      afterEach: () => { iterations++; hooks.afterEach?.(); },
    });
    const count = this.dp.tableInfo(this.flows.table).count;
    if (!expectCreated(iterations) || count !== OPEN_FLOWS) {
      throw new Error(`wasm ${what} IPv${this.family}: ${Number(this.created() - c0)} entries created in ${iterations} iterations; table holds ${count}`);
    }
    return t;
  }

  hot(flowAt: (k: number) => number): Promise<Timing> {
    const batch = this.dp.createBatch(BATCH);
    this.flows.fill(batch, "ack", flowAt);
    this.dp.process(batch, NOW);
    expectAll(batch, "established", `wasm CT hit (hot) IPv${this.family}`);
    const c0 = this.created();
    return this.timed("CT hit (hot)", batch, {}, () => this.created() === c0);
  }

  cold(flowAt: (j: number) => number): Promise<Timing> {
    const batch = this.dp.createBatch(BATCH);
    let cursor = 0;
    const refill = () => { this.flows.fill(batch, "ack", (k) => flowAt(cursor + k)); cursor += BATCH; };
    refill();
    this.dp.process(batch, NOW);
    expectAll(batch, "established", `wasm CT hit (cold) IPv${this.family}`);
    const c0 = this.created();
    return this.timed("CT hit (cold)", batch, { beforeEach: refill }, () => this.created() === c0);
  }

  miss(firstNew: number): Promise<Timing> {
    const batch = this.dp.createBatch(BATCH);
    let next = firstNew;
    let start = next;
    const refill = () => {
      if (next + BATCH > MAX_FLOWS) next = firstNew; // ids recycle safely: their entries were deleted
      start = next;
      next += BATCH;
      this.flows.fill(batch, "syn", (k) => start + k);
    };
    let notDeleted = 0;
    const del = () => {
      for (let k = 0; k < batch.length; k++) if (!this.dp.deleteEntry(this.flows.table, this.flows.key(start + k))) notDeleted++;
    };
    refill();
    this.dp.process(batch, NOW);
    expectAll(batch, "new", `wasm CT miss IPv${this.family}`);
    del();
    const c0 = this.created();
    return this.timed("CT miss + create", batch, { beforeEach: refill, afterEach: del },
      (iterations) => notDeleted === 0 && Number(this.created() - c0) === iterations * BATCH);
  }
}


function row(scenario: string, family: Family, wasm: Timing, runs: Runs, repeat: number): KernelRow {
  const wasmNs = (wasm.meanMs * 1e6) / BATCH;
  const raw = mean(runs.raw);
  const overhead = mean(runs.nop);
  const net = raw - overhead;
  const netP50 = median(runs.raw) - median(runs.nop);
  return {
    scenario,
    family: `IPv${family}`,
    wasmNsPerPacket: wasmNs,
    wasmRmePercent: wasm.rme,
    wasmIterations: wasm.iterations,
    kernelRawNs: raw,
    kernelRawP50Ns: median(runs.raw),
    overheadNs: overhead,
    overheadP50Ns: median(runs.nop),
    kernelNetNs: net,
    kernelNetP50Ns: netP50,
    repeat,
    kernelRuns: runs.raw.length,
    ratioNet: wasmNs / net,
    ratioRaw: wasmNs / raw,
    ratioNetP50: wasmNs / netP50,
  };
}

function methodCheck(family: Family, hotLoop: Runs, hotLone: Runs, cold: Runs, wasmCold: Timing): MethodCheck {
  const loopNet = median(hotLoop.raw.map((r, i) => r - hotLoop.nop[i]!));
  const loneNet = median(hotLone.raw) - median(hotLone.nop);
  const coldNet = median(cold.raw) - median(cold.nop);
  const wasmColdNs = (wasmCold.meanMs * 1e6) / BATCH;
  return {
    family: `IPv${family}`,
    hotLoopNetNs: loopNet,
    hotLoneNetNs: loneNet,
    hotLoneRuns: hotLone.raw.length,
    coldNetNs: coldNet,
    lonePenaltyNs: loneNet - loopNet,
    coldExtraNs: coldNet - loneNet,
    wasmColdNs,
    wasmVsBracket: wasmColdNs <= loopNet ? "below" : wasmColdNs > coldNet ? "above" : "within",
  };
}

export async function runKernel(): Promise<KernelResult> {
  const why = missing();
  if (why) {
    console.log(`  skipped: ${why}`);
    return { skipped: why };
  }

  const loadStart = loadavg()[0]!;
  const nopObject = loadNop();
  const object = loadBenchKernel("membrane", resolveOptions(OPTIONS), NOW);
  const rows: KernelRow[] = [];
  const checks: MethodCheck[] = [];
  try {
    const dp = await Datapath.create(OPTIONS);
    const prog = object.program("test_process");
    const nop = nopObject.program("nop");
    for (const family of [4, 6] as const) {
      const wasm = new WasmFamily(dp, family);
      const kernel = new KernelFamily(object, prog, nop, family);
      let t0 = performance.now();
      wasm.open();
      const records = wasm.records();
      const tOpen = performance.now() - t0;
      t0 = performance.now();
      const hotFlow = (k: number) => scattered(k, OPEN_FLOWS);
      const coldFlow = (j: number) => scattered(COLD_START + j, OPEN_FLOWS);
      kernel.prefill(records, [hotFlow(0), hotFlow(BATCH - 1), coldFlow(0), OPEN_FLOWS - 1]);
      records.length = 0;
      console.log(`  IPv${family}: Wasm opened ${num(OPEN_FLOWS)} flows in ${num(tOpen / 1000, 1)} s; ` +
        `its table copied into the kernel map in ${num((performance.now() - t0) / 1000, 1)} s`);

      // Kernel first, then Wasm: each side has its own tables, so neither changes what the other reads.
      const kHot = kernel.hot(hotFlow);
      const { cold: kCold, hotLone: kHotLone } = kernel.cold(coldFlow, hotFlow);
      const kMiss = kernel.miss(OPEN_FLOWS);
      const kCount = kernel.count();
      if (kCount !== OPEN_FLOWS) throw new Error(`kernel IPv${family}: ${kCount} entries at the end, expected ${OPEN_FLOWS} (evictions or leftovers)`);

      const wHot = await wasm.hot(hotFlow);
      const wCold = await wasm.cold(coldFlow);
      const wMiss = await wasm.miss(OPEN_FLOWS);

      rows.push(row(HOT, family, wHot, kHot, HOT_REPEAT));
      rows.push(row(COLD, family, wCold, kCold, 1));
      rows.push(row("CT miss + create", family, wMiss, kMiss, 1));
      checks.push(methodCheck(family, kHot, kHotLone, kCold, wCold));
    }
  } finally {
    object.close();
    nopObject.close();
  }

  const verdict = (scenario: string): GoalVerdict => {
    const rs = rows.filter((r) => r.scenario === scenario);
    return {
      metVsNet: rs.every((r) => r.ratioNet <= 1),
      metVsRaw: rs.every((r) => r.ratioRaw <= 1),
      metVsNetP50: rs.every((r) => r.ratioNetP50 <= 1),
    };
  };
  const result = {
    tableEntries: TABLE_ENTRIES,
    openFlows: OPEN_FLOWS,
    hotRepeat: HOT_REPEAT,
    loadAverage: { start: loadStart, end: loadavg()[0]! },
    rows,
    methodCheck: checks,
    goal: { hot: verdict(HOT), cold: verdict(COLD) },
  };
  print(result);
  return result;
}

const HOT = "CT hit, hot (same 256 flows)";
const COLD = "CT hit, cold (scattered)";

function print(r: Extract<KernelResult, { rows: KernelRow[] }>): void {
  const x = (v: number) => `${num(v, 2)}x`;
  const ns = (v: number) => num(v, 1);
  printTable(
    `Wasm vs kernel BPF, ns/packet, TCP tables of ${num(r.tableEntries)} entries holding the same ${num(r.openFlows)} flows`,
    r.rows.map((row) => ({
      scenario: row.scenario,
      family: row.family,
      "Wasm": ns(row.wasmNsPerPacket),
      "kernel raw": ns(row.kernelRawNs),
      "run overhead": ns(row.overheadNs),
      "kernel net": ns(row.kernelNetNs),
      "Wasm/net": x(row.ratioNet),
      "Wasm/raw": x(row.ratioRaw),
      "net p50": ns(row.kernelNetP50Ns),
      "Wasm/net p50": x(row.ratioNetP50),
      "kernel runs": `${num(row.kernelRuns)} x repeat ${num(row.repeat)}`,
    })),
    [
      "Wasm = mean time of one process() call over a batch of 256 (tinybench, 1 s after 250 ms warmup) / 256, as in the conntrack",
      "  suite but re-measured here on the same flows the kernel gets: hot = the same 256 flows every iteration; cold = a",
      "  different 256 of the 500,000 flows each iteration, scattered order; miss = 256 new flows each iteration, entries",
      "  deleted untimed afterwards. Raw IP packets; includes the JS->Wasm call per batch.",
      "kernel raw = mean of BPF_PROG_TEST_RUN's duration (the kernel's own per-repetition average, integer ns, truncated) for",
      `  bpf_test.o's test_process on the same packets in Ethernet frames: hot = each of the same 256 flows with repeat ${num(r.hotRepeat)}`,
      `  (one flow looped: even hotter than Wasm's 256); cold = one run per flow, the first ${num(COLD_PACKETS)} flows of the same scattered`,
      "  walk; miss = one run per new flow (with repeat>1 only the first run would miss), its entry deleted through the map after.",
      "run overhead = the same measurement of a tc program that only returns 0, run on the same frame with the same repeat right",
      "  after each real run: the timer's clock reads and the test loop's call into the program. kernel net = raw - overhead: what",
      `  the datapath program costs beyond an empty one. At repeat ${num(r.hotRepeat)} it is the test loop's own work per repetition`,
      "  (the call into the program, the loop's checks); at repeat 1 it is mostly the two clock reads around the single run.",
      "net p50 = median raw - median overhead. skb test runs are preemptible, so on a busy machine some runs include time spent",
      `  elsewhere, which pulls repeat=1 means up: 1-min load average ${num(r.loadAverage.start, 2)} when this suite started,`,
      `  ${num(r.loadAverage.end, 2)} when it ended, on ${cpus().length} CPUs.`,
      "Wasm/...: <= 1.00x means Wasm is at or below the kernel's ns/packet.",
    ],
  );

  printTable(
    "Kernel cold cost bracket: what test runs can and cannot tell (medians, net of the run overhead)",
    r.methodCheck.map((c) => ({
      family: c.family,
      [`hot, repeat ${num(r.hotRepeat)}`]: ns(c.hotLoopNetNs),
      "hot, repeat 1": ns(c.hotLoneNetNs),
      "cold, repeat 1": ns(c.coldNetNs),
      "lone-run penalty": ns(c.lonePenaltyNs),
      "cold extra": ns(c.coldExtraNs),
      "Wasm cold": ns(c.wasmColdNs),
      "Wasm vs bracket": c.wasmVsBracket,
    })),
    [
      "hot, repeat 1 = the same 256 hot flows, one packet per test run, interleaved run for run with the cold row's runs",
      `  (${num(r.rows.find((x) => x.scenario === COLD)!.kernelRuns)} runs in turn over the 256), so both see the same machine.`,
      "lone-run penalty = hot at repeat 1 - hot looped: what one packet per syscall costs for the very same flows (the program's",
      "  code, branch predictors, TLB entries and cache lines lost to the trip through user space between runs).",
      "cold extra = cold - hot, both at repeat 1: what cold table memory adds when runs are alone. Near zero (or negative) means",
      "  a lone run is about as slow for hot flows as for cold ones, so repeat=1 cannot isolate the cold-memory cost.",
      "The kernel's cold cost per packet in a busy datapath therefore lies between hot looped (a floor: warm code, hot entry)",
      "  and cold at repeat 1 (a ceiling: cold entry plus the lone-run penalty). Wasm, 256 packets per call, has no such penalty.",
      ...goalLines(r),
    ],
  );
}

function goalLines(r: Extract<KernelResult, { rows: KernelRow[] }>): string[] {
  const per = (scenario: string) =>
    r.rows.filter((x) => x.scenario === scenario)
      .map((x) => `${x.family} ${num(x.ratioNet, 2)}x (p50 ${num(x.ratioNetP50, 2)}x, raw ${num(x.ratioRaw, 2)}x)`).join(", ");
  const state = (g: GoalVerdict) =>
    g.metVsNet && g.metVsNetP50
      ? "MET"
      : g.metVsNet || g.metVsNetP50
        ? "MIXED (met by one of mean/median, not the other)"
        : g.metVsRaw
          ? "NOT MET against the kernel's net cost (met only if the test-run overhead is counted as kernel cost)"
          : "NOT MET";
  const checks = r.methodCheck;
  const share = checks.map((c) => `${c.family} ${num((100 * c.lonePenaltyNs) / c.coldNetNs, 0)}%`).join(", ");
  const bracket = checks.map((c) => `${c.family} Wasm ${num(c.wasmColdNs, 0)} ns vs ${num(c.hotLoopNetNs, 0)}..${num(c.coldNetNs, 0)} ns`).join(", ");
  const coldCall = checks.every((c) => c.wasmVsBracket === "below")
    ? "MET for any kernel cost in the bracket"
    : checks.every((c) => c.wasmVsBracket === "above")
      ? "NOT MET even against the ceiling"
      : checks.some((c) => c.wasmVsBracket === "above")
        ? "NOT MET for at least one family even against the ceiling"
        : "UNDECIDED: Wasm beats the kernel's lone-run figure, not its looped floor";
  return [
    `GOAL "Wasm at or below the kernel's ns/packet for the CT hit path" (Wasm / kernel net, both families):`,
    `  hot:  ${state(r.goal.hot)}; ${per(HOT)}.`,
    `        (The kernel's hot figure loops one flow ${num(r.hotRepeat)} times, which if anything favours the kernel.)`,
    `  cold: ${state(r.goal.cold)} against the kernel's repeat=1 figure as asked; ${per(COLD)}.`,
    `        But ${share} of that figure is lone-run penalty, which Wasm does not pay. Against the bracket above`,
    `        (${bracket}):`,
    `        ${coldCall}.`,
  ];
}
