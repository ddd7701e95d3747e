/**
 * Service LB suite: ns/packet for a new flow to a service and for an
 * established flow to a service, in Wasm and in the kernel program
 * (BPF_PROG_TEST_RUN), side by side, IPv4 and IPv6.
 *
 * Both datapaths get the same records through one ServiceManager: per family
 * 1,024 `random` services with 8 backends each (9,216 service entries: a
 * master and 8 slots each; 8,192 backends; 1,024 rev-NAT entries) and 16
 * `maglev` services with 8 backends (M = 16381, 16 rows). Every flow is TCP,
 * egress, from one of 256 clients to a VIP; flow k goes to service k % 1024
 * (maglev: k % 16).
 *
 * Scenarios, per family (256 distinct flows each, one batch of 256):
 *  - "no service": a SYN to an address that is no VIP: the LB lookup misses,
 *    conntrack creates the entry (the new-flow path without services).
 *  - "new flow (random)": a SYN to a VIP: service lookup, slot, backend,
 *    SERVICE conntrack entry, DNAT, the client -> backend entry.
 *  - "new flow (maglev)": the same, the backend from the service's Maglev row.
 *  - "established (random)": an ACK of a flow set up before: SERVICE entry
 *    lookup, backend by its recorded id, DNAT, conntrack lookup.
 * Wasm: one process() of 256 per iteration, mean / 256. The batch is
 * refilled before each iteration (untimed: DNAT rewrites it in place), and
 * for new flows conntrack is flushed after each (untimed). Kernel: each frame
 * test-run once (repeat=1: a repetition would see the rewritten packet),
 * conntrack cleared after each new flow (untimed); the trivial program's
 * duration on the same frame is subtracted ("net"); 4 rounds of the 256 frames.
 */
import { Datapath } from "../host/datapath.js";
import { resolveOptions, type DatapathOptions } from "../host/config.js";
import type { BpfProgram } from "../host/bpf/program.js";
import { decodeSkbCtx, encodeSkbCtx } from "../host/bpf/skb-ctx.js";
import { packet4, packet6 } from "../host/packet/build.js";
import { decodePacket } from "../host/packet/decode.js";
import { CtDir, CtResult } from "../host/generated/layout.js";
import { KernelLbTables } from "../host/kernel/lb-tables.js";
import { ServiceManager, type ServiceSpec } from "../host/lb/manager.js";
import type { PacketBatch } from "../host/wasm/batch.js";
import { measure } from "./conntrack.js";
import { loadNop } from "./kernel.js";
import { num, printTable } from "./report.js";
import { ethFrame, kernelUnavailable, loadBenchKernel } from "./kernel-setup.js";

const BATCH = 256;
const NOW = 1000;
const SERVICES = 1024;
const MAGLEV_SERVICES = 16;
const BACKENDS_PER_SERVICE = 8;
const KERNEL_ROUNDS = 4;
const OPTIONS: DatapathOptions = {
  conntrack: { tcpEntries: 65536, otherEntries: 4096 },
  lb: { services: 16384, backends: 16384, revNat: 4096, maglevM: 16381, maglevRows: 2 * MAGLEV_SERVICES },
  hashSeed: 7,
};
type Family = 4 | 6;
type Scenario = "no service" | "new flow (random)" | "new flow (maglev)" | "established (random)";
const SCENARIOS: readonly Scenario[] = ["no service", "new flow (random)", "new flow (maglev)", "established (random)"];

export interface LbRow {
  scenario: Scenario;
  family: `IPv${Family}`;
  wasmNs: number;
  kernelNetNs: number;
  kernelRawNs: number;
  ratio: number;
}

const vip = (family: Family, s: number, maglev: boolean) =>
  family === 4 ? `10.${maglev ? 97 : 96}.${s >> 8}.${s & 255}` : `fd00:${maglev ? 97 : 96}::${s.toString(16)}`;
const backendAddr = (family: Family, s: number, b: number, maglev: boolean) =>
  family === 4 ? `10.${maglev ? 3 : 2}.${s >> 2}.${((s & 3) << 6) | b}` : `fd00:${maglev ? 3 : 2}::${s.toString(16)}:${b}`;

function services(): ServiceSpec[] {
  const out: ServiceSpec[] = [];
  for (const family of [4, 6] as const) {
    for (let s = 0; s < SERVICES; s++) {
      out.push({ vip: vip(family, s, false), port: 80, proto: "tcp", backends: Array.from({ length: BACKENDS_PER_SERVICE }, (_, b) => ({ addr: backendAddr(family, s, b, false), port: 8080 })) });
    }
    for (let s = 0; s < MAGLEV_SERVICES; s++) {
      out.push({ vip: vip(family, s, true), port: 80, proto: "tcp", algorithm: "maglev", backends: Array.from({ length: BACKENDS_PER_SERVICE }, (_, b) => ({ addr: backendAddr(family, s, b, true), port: 8080 })) });
    }
  }
  return out;
}

/** 256 packets of one scenario: client k -> the VIP of service k (or a plain address). */
function packets(family: Family, scenario: Scenario): Uint8Array[] {
  return Array.from({ length: BATCH }, (_, k) => {
    const src = family === 4 ? `10.1.${k >> 8}.${k & 255}` : `fd00:1::${k.toString(16)}`;
    const dst = scenario === "no service" ? (family === 4 ? `10.50.0.${k}` : `fd00:50::${k.toString(16)}`)
      : scenario === "new flow (maglev)" ? vip(family, k % MAGLEV_SERVICES, true) : vip(family, (k * 4) % SERVICES, false);
    const b = family === 4 ? packet4({ src, dst }) : packet6({ src, dst });
    return b.tcp({ sport: 30_000 + k, dport: 80, flags: scenario === "established (random)" ? { ack: true } : { syn: true } });
  });
}

/** The SYNs that set up the established scenario's flows. */
function setupPackets(family: Family): Uint8Array[] {
  return packets(family, "new flow (random)");
}

/** Throws unless the packets were decided as the scenario expects (DNATed off the VIP for services). */
function check(what: string, scenario: Scenario, ct: string, verdict: string, out: Uint8Array, input: Uint8Array): void {
  const expectCt = scenario === "established (random)" ? "established" : "new";
  const before = decodePacket(input, "ip").dst, after = decodePacket(out, "ip").dst;
  const dnat = scenario !== "no service";
  if (verdict !== "pass" || ct !== expectCt || (before !== after) !== dnat) {
    throw new Error(`${what}: got ${verdict}/${ct}, destination ${before} -> ${after}; expected pass/${expectCt}${dnat ? " with DNAT" : ""}`);
  }
}

function fill(batch: PacketBatch, list: Uint8Array[]): void {
  batch.clear();
  for (const p of list) batch.push(p, { direction: "egress" });
}

async function wasmNs(dp: Datapath, family: Family, scenario: Scenario): Promise<number> {
  const batch = dp.createBatch(BATCH, { bufferSize: 256 });
  const list = packets(family, scenario);
  dp.flush();
  if (scenario === "established (random)") {
    fill(batch, setupPackets(family));
    dp.process(batch, NOW);
  }
  fill(batch, list);
  dp.process(batch, NOW);
  for (let i = 0; i < BATCH; i++) {
    const v = batch.result(i);
    check(`wasm ${scenario} IPv${family} packet ${i}`, scenario, v.ct, v.verdict, v.data, list[i]!);
  }
  const established = scenario === "established (random)";
  if (!established) dp.flush();
  const t = await measure(`lb ${scenario} IPv${family} (wasm)`, () => dp.process(batch, NOW), {
    beforeEach: () => fill(batch, list),
    afterEach: () => { if (!established) dp.flush(); },
  });
  dp.flush();
  return (t.meanMs * 1e6) / BATCH;
}

const CTX = encodeSkbCtx({ cb: [CtDir.CT_EGRESS] });
const CT_NAMES: Record<number, string> = { [CtResult.CT_NEW]: "new", [CtResult.CT_ESTABLISHED]: "established", [CtResult.CT_REPLY]: "reply", [CtResult.CT_RELATED]: "related", [CtResult.CT_NONE]: "none" };

function kernelNs(flush: () => void, prog: BpfProgram, nop: BpfProgram, family: Family, scenario: Scenario): { raw: number; net: number } {
  const established = scenario === "established (random)";
  flush();
  if (established) for (const p of setupPackets(family)) prog.testRun({ data: ethFrame(p, family), ctx: CTX });
  const list = packets(family, scenario);
  const frames = list.map((p) => ethFrame(p, family));
  let raw = 0, over = 0;
  for (let n = 0; n < KERNEL_ROUNDS * frames.length; n++) {
    const i = n % frames.length, frame = frames[i]!;
    const r = prog.testRun({ data: frame, ctx: CTX });
    if (n < frames.length) {
      const cb0 = decodeSkbCtx(r.ctx!).cb[0]!;
      check(`kernel ${scenario} IPv${family} frame ${i}`, scenario, CT_NAMES[(cb0 >>> 16) & 0xff] ?? "?", (cb0 & 0xff) === 0 ? "pass" : "drop", r.data.subarray(14), list[i]!);
    }
    raw += r.durationNs;
    over += nop.testRun({ data: frame, ctx: CTX }).durationNs;
    if (!established) flush();
  }
  flush();
  const runs = KERNEL_ROUNDS * frames.length;
  return { raw: raw / runs, net: (raw - over) / runs };
}

export async function runLb(): Promise<{ skipped: string } | { rows: LbRow[] }> {
  const why = kernelUnavailable();
  if (why) {
    console.log(`  skipped: ${why}`);
    return { skipped: why };
  }
  const dp = await Datapath.create(OPTIONS);
  const resolved = resolveOptions(OPTIONS);
  const object = loadBenchKernel("lb_bench", resolved, NOW);
  const nopObject = loadNop();
  try {
    const manager = new ServiceManager([dp.lbTables(), new KernelLbTables(object, resolved.lb)], resolved.lb);
    for (const s of services()) manager.upsertService(s);
    const prog = object.program("test_process");
    const nop = nopObject.program("nop");
    const flush = () => { for (const m of ["ct_tcp4", "ct_tcp6"]) object.map(m).clear(); };
    const rows: LbRow[] = [];
    for (const family of [4, 6] as const) {
      for (const scenario of SCENARIOS) {
        const wasm = await wasmNs(dp, family, scenario);
        const k = kernelNs(flush, prog, nop, family, scenario);
        rows.push({ scenario, family: `IPv${family}`, wasmNs: wasm, kernelNetNs: k.net, kernelRawNs: k.raw, ratio: wasm / k.net });
      }
    }
    printTable("Service LB: new and established flows to a service, Wasm vs kernel BPF (ns/packet)", rows.map((r) => ({
      scenario: r.scenario, family: r.family, "wasm ns": num(r.wasmNs, 1), "kernel net ns": num(r.kernelNetNs, 1),
      "kernel raw ns": num(r.kernelRawNs, 1), "wasm/kernel": `${num(r.ratio, 2)}x`,
    })), [
      `per family ${SERVICES} random services x ${BACKENDS_PER_SERVICE} backends (${SERVICES * (BACKENDS_PER_SERVICE + 1)} service entries, ${SERVICES * BACKENDS_PER_SERVICE} backends) + ${MAGLEV_SERVICES} maglev services x ${BACKENDS_PER_SERVICE} backends (M = 16381)`,
      `batch ${BATCH} flows (Wasm: one process() call); conntrack flushed after each new-flow iteration (untimed)`,
      "kernel net = test-run duration minus a trivial program's on the same frame; repeat=1, 4 rounds of the 256 frames",
    ]);
    for (const family of [4, 6] as const) {
      const get = (s: Scenario) => rows.find((r) => r.family === `IPv${family}` && r.scenario === s)!;
      console.log(`  IPv${family}: a new flow to a service costs ${num(get("new flow (random)").wasmNs - get("no service").wasmNs, 1)} ns more than one to no service in Wasm, ${num(get("new flow (random)").kernelNetNs - get("no service").kernelNetNs, 1)} ns in the kernel`);
    }
    return { rows };
  } finally {
    dp.close();
    object.close();
    nopObject.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  runLb().catch((e: unknown) => {
    console.error(e instanceof Error ? (e.stack ?? e.message) : e);
    process.exitCode = 1;
  });
}
