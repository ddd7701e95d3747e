/**
 * Policy suite: the new-flow path with and without the policy lookup, in
 * Wasm and in the kernel program (BPF_PROG_TEST_RUN), side by side.
 *
 * Both datapaths get the same records through one PolicyDatapathWriter: 64
 * local endpoints (IPv4 and IPv6), an ipcache of 4,096 prefixes per family
 * spread over 4 prefix lengths (/8 /16 /24 /32; /32 /48 /64 /128), and 4,096
 * policy entries (64 per endpoint). Each flow is a TCP SYN, egress, from an
 * enforcing endpoint to a /32 (/128) of the ipcache (so every prefix length
 * is probed from the longest down and the longest hits at once in Wasm).
 * Allowed flows are decided by the identity-wildcard entry for port 80, so all
 * 8 policy candidates are probed (deny wins: an allow never ends the search).
 *
 * Scenarios, per family (256 distinct flows each):
 *  - "no policy": the source is no local endpoint; conntrack creates the entry.
 *  - "allowed": endpoint lookup + ipcache + 8 policy probes + conntrack create.
 *  - "denied": endpoint lookup + ipcache + 8 probes, dropped, no entry made.
 * Wasm: one process() of 256 per iteration, mean / 256; the conntrack table
 * is flushed after each iteration (untimed) so every SYN is new again. Kernel:
 * each of the 256 frames test-run once (repeat=1: with repeat > 1 an allowed
 * flow is established from the second run on, and a dropped packet's decision
 * left in skb->cb turns the next repetition into an ingress packet), the
 * conntrack maps cleared after it (untimed); the trivial program's duration on
 * the same frame is subtracted ("net"). Each kernel scenario runs 4 rounds of
 * the 256 frames; the table shows the mean.
 */
import { Datapath } from "../host/datapath.js";
import { KernelPolicyTables } from "../host/kernel/policy-tables.js";
import { resolveOptions } from "../host/config.js";
import type { BpfProgram } from "../host/bpf/program.js";
import { decodeSkbCtx, encodeSkbCtx } from "../host/bpf/skb-ctx.js";
import { packet4, packet6 } from "../host/packet/build.js";
import { CtDir, DropReason } from "../host/generated/layout.js";
import { PolicyDatapathWriter } from "../host/policy/datapath-writer.js";
import type { EndpointRecord, IpcacheRecord, PolicyEntry } from "../host/policy/types.js";
import type { DatapathOptions } from "../host/config.js";
import { measure } from "./conntrack.js";
import { loadNop } from "./kernel.js";
import { num, printTable } from "./report.js";
import { ethFrame, kernelUnavailable, loadBenchKernel } from "./kernel-setup.js";

const BATCH = 256;
const NOW = 1000;
const ENDPOINTS = 64;
const PREFIXES = 4096;
const ENTRIES_PER_ENDPOINT = 64;
const KERNEL_ROUNDS = 4;
const OPTIONS: DatapathOptions = {
  conntrack: { tcpEntries: 65536, otherEntries: 4096 },
  policy: { endpoints: ENDPOINTS, ipcache: PREFIXES * 2, entries: ENDPOINTS * ENTRIES_PER_ENDPOINT },
  hashSeed: 7,
};
type Family = 4 | 6;
type Scenario = "no policy" | "allowed" | "denied";

export interface PolicyRow {
  scenario: string;
  family: `IPv${Family}`;
  wasmNs: number;
  kernelNetNs: number;
  kernelRawNs: number;
  ratio: number;
}

const v4 = (a: number, b: number, c: number, d: number) => `${a}.${b}.${c}.${d}`;
const v6 = (a: number, b: number, c: number, d: number) => `fd${a.toString(16).padStart(2, "0")}:${b.toString(16)}:${c.toString(16)}::${d.toString(16)}`;

/** The policy world both datapaths get. Endpoint e sits at 10.200.e.1 / fdc8:e::1 (outside every ipcache prefix). */
function world(): { endpoints: EndpointRecord[]; ipcache: IpcacheRecord[]; policy: Map<number, PolicyEntry[]> } {
  const endpoints = Array.from({ length: ENDPOINTS }, (_, e) => ({
    id: e + 1, identity: 50_000 + e, ipv4: `10.200.${e}.1`, ipv6: `fdc8:${e.toString(16)}::1`, ifindex: 100 + e,
    mac: `02:00:00:00:${(e >> 8).toString(16).padStart(2, "0")}:${(e & 255).toString(16).padStart(2, "0")}`,
    enforceIngress: true, enforceEgress: true,
  }));
  const ipcache: IpcacheRecord[] = [];
  // 1024 prefixes of each length per family; identities 1000 + n.
  for (let n = 0; n < 1024; n++) {
    const a = 11 + (n % 64), b = n >> 6;
    ipcache.push(
      { cidr: `${v4(a, 0, 0, 0)}/8`, identity: 1000 + (n % 64) }, { cidr: `${v4(a, b, 0, 0)}/16`, identity: 2000 + n },
      { cidr: `${v4(a, b, 7, 0)}/24`, identity: 3000 + n }, { cidr: `${v4(a, b, 7, 9)}/32`, identity: 4000 + n },
      { cidr: `${v6(a, 0, 0, 0).replace(/:0:0::0$/, "::")}/16`, identity: 1000 + (n % 64) }, { cidr: `${v6(a, b, 0, 0).replace(/:0::0$/, "::")}/32`, identity: 2000 + n },
      { cidr: `${v6(a, b, 7, 0).replace(/::0$/, "::")}/48`, identity: 3000 + n }, { cidr: `${v6(a, b, 7, 9)}/128`, identity: 4000 + n },
    );
  }
  const unique = [...new Map(ipcache.map((r) => [r.cidr, r])).values()];
  const policy = new Map<number, PolicyEntry[]>();
  for (const ep of endpoints) {
    const entries: PolicyEntry[] = [{ identity: 0, port: 80, proto: 6, direction: "egress", deny: false }];
    for (let i = 1; i < ENTRIES_PER_ENDPOINT; i++) entries.push({ identity: 4000 + ((ep.id * 31 + i) % 1024), port: 1000 + i, proto: 6, direction: i % 2 ? "egress" : "ingress", deny: i % 5 === 0 });
    policy.set(ep.id, entries);
  }
  return { endpoints, ipcache: unique, policy };
}

/** 256 SYNs of one scenario: from endpoint k % 64 to the /32 (/128) of prefix k, port 80 (allowed) or 81 (denied). */
function packets(family: Family, scenario: Scenario): Uint8Array[] {
  return Array.from({ length: BATCH }, (_, k) => {
    const n = (k * 4) % 1024;
    const a = 11 + (n % 64), b = n >> 6, ep = k % ENDPOINTS;
    const src = scenario === "no policy" ? (family === 4 ? `10.201.${ep}.1` : `fdc9:${ep.toString(16)}::1`) : family === 4 ? `10.200.${ep}.1` : `fdc8:${ep.toString(16)}::1`;
    const dst = family === 4 ? v4(a, b, 7, 9) : v6(a, b, 7, 9);
    const b2 = family === 4 ? packet4({ src, dst }) : packet6({ src, dst });
    return b2.tcp({ sport: 30_000 + k, dport: scenario === "denied" ? 81 : 80, flags: { syn: true } });
  });
}

async function wasmNs(dp: Datapath, family: Family, scenario: Scenario): Promise<number> {
  const batch = dp.createBatch(BATCH, { bufferSize: 256 });
  for (const p of packets(family, scenario)) batch.push(p, { direction: "egress" });
  dp.process(batch, NOW);
  for (let i = 0; i < BATCH; i++) {
    const v = batch.result(i);
    const ok = scenario === "denied" ? v.dropReason === "DROP_POLICY" : v.verdict === "pass" && v.ct === "new";
    if (!ok) throw new Error(`wasm ${scenario} IPv${family}: packet ${i} got ${v.verdict}/${v.ct}/${v.dropReason}`);
  }
  dp.flush();
  const t = await measure(`policy ${scenario} IPv${family} (wasm)`, () => dp.process(batch, NOW), { afterEach: () => dp.flush() });
  return (t.meanMs * 1e6) / BATCH;
}

const CTX = encodeSkbCtx({ cb: [CtDir.CT_EGRESS] });

function kernelNs(flush: () => void, prog: BpfProgram, nop: BpfProgram, family: Family, scenario: Scenario): { raw: number; net: number } {
  const repeat = 1;
  let raw = 0, over = 0;
  const frames = packets(family, scenario).map((p) => ethFrame(p, family));
  for (let n = 0; n < KERNEL_ROUNDS * frames.length; n++) {
    const i = n % frames.length, frame = frames[i]!;
    const r = prog.testRun({ data: frame, ctx: CTX, repeat });
    const cb0 = decodeSkbCtx(r.ctx!).cb[0]!;
    const reason = (cb0 >>> 8) & 0xff;
    if (reason !== (scenario === "denied" ? DropReason.DROP_POLICY : 0)) throw new Error(`kernel ${scenario} IPv${family}: frame ${i} got cb[0] 0x${cb0.toString(16)}`);
    raw += r.durationNs;
    over += nop.testRun({ data: frame, ctx: CTX, repeat }).durationNs;
    if (scenario !== "denied") flush();
  }
  const runs = KERNEL_ROUNDS * frames.length;
  return { raw: raw / runs, net: (raw - over) / runs };
}

export async function runPolicy(): Promise<{ skipped: string } | { rows: PolicyRow[] }> {
  const why = kernelUnavailable();
  const w = world();
  const dp = await Datapath.create(OPTIONS);
  if (why) {
    console.log(`  kernel side skipped: ${why}`);
    return { skipped: why };
  }
  const object = loadBenchKernel("policy_bench", resolveOptions(OPTIONS), NOW);
  const nopObject = loadNop();
  try {
    const writer = new PolicyDatapathWriter([dp.policyTables(), new KernelPolicyTables(object)]);
    writer.setEndpoints(w.endpoints);
    writer.setIpcache(w.ipcache);
    writer.applyPolicy({ recomputed: [...w.policy.keys()], changes: new Map([...w.policy].map(([id, add]) => [id, { add, remove: [] }])) });
    const prog = object.program("test_process");
    const nop = nopObject.program("nop");
    const flush = () => { for (const m of ["ct_tcp4", "ct_tcp6"]) object.map(m).clear(); };
    const rows: PolicyRow[] = [];
    for (const family of [4, 6] as const) {
      for (const scenario of ["no policy", "allowed", "denied"] as const) {
        const wasm = await wasmNs(dp, family, scenario);
        const k = kernelNs(flush, prog, nop, family, scenario);
        rows.push({ scenario, family: `IPv${family}`, wasmNs: wasm, kernelNetNs: k.net, kernelRawNs: k.raw, ratio: wasm / k.net });
      }
    }
    printTable("New-flow path with policy: Wasm vs kernel BPF (ns/packet)", rows.map((r) => ({
      scenario: r.scenario, family: r.family, "wasm ns": num(r.wasmNs, 1), "kernel net ns": num(r.kernelNetNs, 1),
      "kernel raw ns": num(r.kernelRawNs, 1), "wasm/kernel": `${num(r.ratio, 2)}x`,
    })), [
      `${ENDPOINTS} endpoints, ${w.ipcache.length} ipcache prefixes (4 lengths per family), ${ENDPOINTS * ENTRIES_PER_ENDPOINT} policy entries; 256 flows per scenario`,
      "policy cost = allowed - no policy (same conntrack work); denied skips conntrack creation",
      "kernel net = test-run duration minus a trivial program's on the same frame; repeat=1, 4 rounds of the 256 frames",
    ]);
    for (const family of [4, 6] as const) {
      const get = (s: string) => rows.find((r) => r.family === `IPv${family}` && r.scenario === s)!;
      console.log(`  IPv${family}: policy lookup adds ${num(get("allowed").wasmNs - get("no policy").wasmNs, 1)} ns in Wasm, ${num(get("allowed").kernelNetNs - get("no policy").kernelNetNs, 1)} ns in the kernel`);
    }
    return { rows };
  } finally {
    object.close();
    nopObject.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  runPolicy().catch((e: unknown) => {
    console.error(e instanceof Error ? (e.stack ?? e.message) : e);
    process.exitCode = 1;
  });
}
