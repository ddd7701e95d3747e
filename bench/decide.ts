/**
 * `node dist/bench/decide.js` (package.json: "bench:decide"): what the Wasm
 * decision costs per packet for the forwarder's own workload, without the
 * device, the syscalls or the worker around it: bench:forwarder-stages's
 * "decide" stage, measured alone and repeatably.
 *
 * The workload is the forwarder suite's (bench/forwarder.ts): 64-byte IPv4
 * UDP packets (20 IP + 8 UDP + 36 payload) of 16 flows, raw IP as a TUN
 * delivers them, direction "auto", in batches of 128, through a datapath with
 * the suite's options (no services, no policy, no NAT), with the monitor ring
 * and the capture tap created as the forwarder's worker creates them (both
 * off). Every timed iteration is one Datapath.process() over the batch, the
 * call the forwarder makes (host/wasm/ only; the exported `process`).
 *
 * Rows:
 *  - empty batch: the call with 0 packets; the per-batch floor (JS -> Wasm
 *    call, the monitor and capture hooks).
 *  - parse only: parse_batch over the same packets; the parser's share.
 *  - established, one way: the suite's traffic, pod1 -> pod2, every packet of
 *    a flow conntrack already holds (its entry was created egress, so "auto"
 *    finds it on the third probe: reverse OUT, reverse IN, forward OUT).
 *  - established, both ways: half the packets are the replies (pod2 -> pod1),
 *    found on the first probe; the mix a request/response workload sends.
 *
 * The datapath writes each packet's direction back into its descriptor; a
 * TUN read stamps "auto" on it again (DescriptorBatch.meta), and so does this
 * bench before each call, as a device would (128 one-byte stores: "reset
 * only" measures them, and they are subtracted).
 * Time is this thread's CPU time (host/sys/thread-cpu-clock.ts), not wall
 * time: the machine is shared, and preemption must not count. Each round
 * runs ROUND_BATCHES calls between two clock reads; ns/packet is the
 * round's CPU time / packets, minimum and median over ROUNDS rounds. Before
 * timing every packet is checked to pass with the expected conntrack outcome,
 * and after, that nothing was created or dropped.
 */
import { loadavg } from "node:os";
import { Datapath } from "../host/datapath.js";
import type { PacketBatch } from "../host/wasm/batch.js";
import { packet4 } from "../host/packet/build.js";
import { CtDir, PKT_DESC } from "../host/generated/layout.js";
import { threadCpuClock } from "../host/sys/thread-cpu-clock.js";
import { num, printTable, type Row } from "./report.js";

const BATCH = 128;
const FLOWS = 16;
const IP_BYTES = 64;
const NOW = 1000;
const POD1 = Uint8Array.of(10, 200, 1, 2);
const POD2 = Uint8Array.of(10, 200, 2, 2);
const SINK_PORT = 9000;
const ROUNDS = Number(process.env.DECIDE_ROUNDS ?? 15);
const ROUND_BATCHES = 2000;

function udp(src: Uint8Array, dst: Uint8Array, sport: number, dport: number): Uint8Array {
  const payload = new Uint8Array(IP_BYTES - 28).fill(0x5a);
  return packet4({ src, dst }).udp({ sport, dport, payload });
}

/** Packet k of a batch: flow k % FLOWS; with `replies`, every other run of 16 packets answers its flows. */
function packetAt(k: number, replies: boolean): { data: Uint8Array; reply: boolean } {
  const flow = k % FLOWS;
  const sport = 40000 + flow;
  const reply = replies && (k >> 4) % 2 === 1;
  return reply ? { data: udp(POD2, POD1, SINK_PORT, sport), reply } : { data: udp(POD1, POD2, sport, SINK_PORT), reply };
}

function fill(batch: PacketBatch, replies: boolean): boolean[] {
  batch.clear();
  const isReply: boolean[] = [];
  for (let k = 0; k < BATCH; k++) {
    const p = packetAt(k, replies);
    batch.push(p.data, { link: "ip", direction: "auto" });
    isReply.push(p.reply);
  }
  return isReply;
}

/** What a device read does to the records besides the bytes: direction "auto" again (the datapath wrote the decided one). */
function directionResetter(batch: PacketBatch): () => void {
  const db = batch.descriptorBatch({ link: "ip", direction: "auto" });
  const first = db.descs + PKT_DESC.offsets.dir;
  const n = batch.length;
  return () => {
    const mem = db.memory;
    for (let i = 0, at = first; i < n; i++, at += PKT_DESC.size) mem[at] = CtDir.DIR_AUTO;
  };
}

function check(batch: PacketBatch, isReply: boolean[], what: string): void {
  for (let i = 0; i < batch.length; i++) {
    const v = batch.result(i);
    const want = isReply[i] ? "reply" : "established";
    if (v.verdict !== "pass" || v.ct !== want) throw new Error(`${what}: packet ${i} got ${v.verdict}/${v.ct}, expected pass/${want}`);
  }
}

interface Timed { minNs: number; medianNs: number }

/** CPU ns per packet of `fn` (one batch of BATCH packets per call): min and median over the rounds. */
function time(fn: () => void): Timed {
  const cpu = threadCpuClock();
  for (let i = 0; i < ROUND_BATCHES; i++) fn(); // warm-up: the Wasm tiers up, caches fill
  const per: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = cpu();
    for (let i = 0; i < ROUND_BATCHES; i++) fn();
    per.push((cpu() - t0) / (ROUND_BATCHES * BATCH));
  }
  per.sort((a, b) => a - b);
  return { minNs: per[0]!, medianNs: per[per.length >> 1]! };
}

export async function runDecide(): Promise<Row[]> {
  const dp = await Datapath.create({ conntrack: { tcpEntries: 65536, otherEntries: 65536 } });
  // As the forwarder's worker: both created, both off.
  dp.monitor();
  dp.capture();
  const rows: Row[] = [];
  const add = (scenario: string, t: Timed, less?: Timed) => rows.push({
    scenario,
    "CPU ns/packet (min)": num(t.minNs - (less?.minNs ?? 0), 1),
    "median": num(t.medianNs - (less?.medianNs ?? 0), 1),
  });

  const empty = dp.createBatch(BATCH, { bufferSize: 256 });
  add("empty batch (per-call floor, / 128)", time(() => dp.process(empty, NOW)));

  const parse = dp.createBatch(BATCH, { bufferSize: 256 });
  fill(parse, false);
  if (dp.parseOnly(parse) !== BATCH) throw new Error("parse only: not every packet parsed as trackable");
  add("parse only", time(() => { dp.parseOnly(parse); }));

  const resetOnly = (() => {
    const b = dp.createBatch(BATCH, { bufferSize: 256 });
    fill(b, false);
    return time(directionResetter(b));
  })();
  add("reset only (subtracted below)", resetOnly);

  for (const replies of [false, true]) {
    const what = replies ? "established, both ways" : "established, one way";
    const batch = dp.createBatch(BATCH, { bufferSize: 256 });
    // Open the flows (pod1 -> pod2 first, so the replies find them), then check the steady state.
    fill(batch, false);
    dp.process(batch, NOW);
    const isReply = fill(batch, replies);
    dp.process(batch, NOW);
    check(batch, isReply, what);
    const reset = directionResetter(batch);
    const before = dp.counters();
    const created0 = before.tables.any4.created;
    const drops0 = before.drops.reduce((n, d) => n + d.packets, 0);
    add(what, time(() => { reset(); dp.process(batch, NOW); }), resetOnly);
    check(batch, isReply, `${what} (after timing)`);
    const after = dp.counters();
    if (after.tables.any4.created !== created0) throw new Error(`${what}: entries were created while timing`);
    if (after.drops.reduce((n, d) => n + d.packets, 0) !== drops0) throw new Error(`${what}: packets were dropped while timing`);
  }
  printTable(`The Wasm decision, 64-byte IPv4 UDP, ${FLOWS} flows, batch of ${BATCH} (load average ${num(loadavg()[0]!, 2)})`, rows, [
    `CPU ns/packet = this thread's CPU time over ${ROUND_BATCHES} Datapath.process() calls / packets; min and median of ${ROUNDS} rounds.`,
    "Datapath options as bench:forwarder (no services, policy or NAT); monitor ring and capture tap created, both off.",
  ]);
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  runDecide().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
