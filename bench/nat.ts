/**
 * NAT suite: the cost of masquerading per packet, Wasm and the kernel program
 * (bpf/bpf_test.c under BPF_PROG_TEST_RUN) side by side on the same packets,
 * and how many live mappings a 1024-port range sustains.
 *
 * Per family, 256 TCP flows from pods (10.0.0.0/8, fd00::/16) to one remote
 * server, masqueraded behind one address:
 *  - established: the flows' ACKs (egress, conntrack hit, forward mapping, source rewritten);
 *  - reply: the server's ACKs to the masquerade address (reverse mapping,
 *    destination rewritten, conntrack looked up again);
 *  - new: SYNs of never-seen flows (conntrack miss, port allocation, two
 *    inserts, rewrite). Wasm: one batch of the same 256 SYNs per iteration,
 *    tables flushed between iterations (untimed). Kernel: 256 SYNs, once each
 *    (repeat=1), maps cleared between rounds.
 *  - and the established ACKs with NAT off, as the baseline NAT adds to.
 * Wasm: tinybench over batches of 256, ns per packet. Kernel: durationNs of
 * test runs at repeat=1, averaged over 256 packets x ROUNDS: a test run reuses
 * one skb for all its repetitions, so from the second one on a rewriting
 * program would see its own output (a translated packet) instead of the input.
 * repeat=1 includes the test run's own overhead (about 100 ns here, see the
 * kernel suite), not subtracted; the NAT-off row carries the same overhead, so
 * kernel NAT-on minus NAT-off is what NAT costs there.
 *
 * Capacity (Wasm; the kernel makes the same choices, see the differential suite):
 * ports 20000..21023, 16 retries, UDP flows from random pods and source ports
 * to D destinations, 1200 x D attempts; how many mappings are live when the
 * first flow is refused, and at the end.
 */
import { Bench } from "tinybench";
import { Datapath } from "../host/datapath.js";
import { resolveOptions, type DatapathOptions } from "../host/config.js";
import { BpfObject } from "../host/bpf/object.js";
import { encodeSkbCtx, decodeSkbCtx } from "../host/bpf/skb-ctx.js";
import { ethernet, packet4, packet6 } from "../host/packet/build.js";
import { num, printTable } from "./report.js";
import { kernelUnavailable, loadBenchKernel } from "./kernel-setup.js";

const NOW = 1000;
const FLOWS = 256;
const ROUNDS = 8;
const MASQ4 = "192.0.2.1", MASQ6 = "2001:db8:ffff::1";
const REMOTE4 = "198.51.100.7", REMOTE6 = "2001:db8:7::7";

function options(nat: boolean): DatapathOptions {
  return {
    hashSeed: 1,
    conntrack: { tcpEntries: 65536, otherEntries: 65536 },
    nat: nat ? {
      ipv4: { address: MASQ4, clusterCidrs: ["10.0.0.0/8"] },
      ipv6: { address: MASQ6, clusterCidrs: ["fd00::/16"] },
      entries: 65536, seed: 9,
    } : undefined,
  };
}

type Family = 4 | 6;

function pod(f: Family, i: number): string {
  return f === 4 ? `10.0.${(i >> 8) & 255}.${i & 255}` : `fd00::${(i >> 16).toString(16)}:${(i & 0xffff).toString(16)}`;
}

function packets(f: Family, base: number) {
  const remote = f === 4 ? REMOTE4 : REMOTE6, masq = f === 4 ? MASQ4 : MASQ6;
  const b = f === 4 ? packet4 : packet6;
  const flows = Array.from({ length: FLOWS }, (_, i) => i + base);
  return {
    syn: flows.map((i) => b({ src: pod(f, i), dst: remote }).tcp({ sport: 40000, dport: 443, flags: { syn: true } })),
    ack: flows.map((i) => b({ src: pod(f, i), dst: remote }).tcp({ sport: 40000, dport: 443, flags: { ack: true } })),
    /** Replies to the ports the flows got: read from the forward mappings after the SYNs. */
    reply: (ports: number[]) => ports.map((p) => b({ src: remote, dst: masq }).tcp({ sport: 443, dport: p, flags: { ack: true } })),
  };
}

async function wasmNs(dp: Datapath, pkts: Uint8Array[], direction: "egress" | "ingress", expect: string, after?: () => void): Promise<number> {
  const batch = dp.createBatch(FLOWS);
  const fill = () => {
    batch.clear();
    for (const p of pkts) batch.push(p, { direction });
  };
  const bench = new Bench({ time: 800, warmupTime: 200, timestampProvider: "hrtimeNow", throws: true });
  bench.add("batch", () => dp.process(batch, NOW), { beforeEach: fill, afterEach: () => {
    const v = batch.result(0);
    if (`${v.verdict}/${v.ct}` !== expect) throw new Error(`wasm: got ${v.verdict}/${v.ct} ${v.dropReason ?? ""}, expected ${expect}`);
    after?.();
  }, async: false });
  const [task] = await bench.run();
  const r = task!.result;
  if (r.state !== "completed") throw new Error(`wasm bench ended ${r.state}`);
  return (r.latency.mean * 1e6) / FLOWS;
}

class Kernel {
  readonly object: BpfObject;

  constructor(opts: DatapathOptions) {
    this.object = loadBenchKernel("membrane-nat-bench", resolveOptions(opts), NOW);
  }

  /** Mean durationNs over the packets, ROUNDS times each; checks every run's decision. */
  run(pkts: Uint8Array[], direction: "egress" | "ingress", expect: string, rounds = ROUNDS): number {
    const prog = this.object.program("test_process");
    let total = 0;
    for (let round = 0; round < rounds; round++) for (const p of pkts) {
      const frame = ethernet({ etherType: p[0] >> 4 === 4 ? 0x0800 : 0x86dd }, p);
      const r = prog.testRun({ data: frame, ctx: encodeSkbCtx({ cb: [direction === "egress" ? 0 : 1] }), repeat: 1 });
      const cb = decodeSkbCtx(r.ctx!).cb[0];
      const got = `${(cb & 0xff) === 0 ? "pass" : "drop"}/${["new", "established", "reply", "related"][(cb >>> 16) & 0xff] ?? "none"}`;
      if (got !== expect) throw new Error(`kernel: got ${got} (reason ${(cb >>> 8) & 0xff}), expected ${expect}`);
      total += r.durationNs;
    }
    return total / (pkts.length * rounds);
  }

  clear(): void {
    for (const m of ["ct_tcp4", "ct_tcp6", "nat4", "nat6"]) this.object.map(m).clear();
  }

  close(): void {
    this.object.close();
  }
}

export interface NatRow { scenario: string; family: string; wasmNs: number; kernelNs?: number; ratio?: number }
export interface CapacityRow { destinations: number; attempts: number; mappings: number; firstRefusalAt: number; refused: number; perDestination: number }

async function perPacket(): Promise<NatRow[]> {
  const rows: NatRow[] = [];
  const missing = kernelUnavailable();
  for (const f of [4, 6] as Family[]) {
    const nat = await Datapath.create(options(true));
    const plain = await Datapath.create(options(false));
    const p = packets(f, 1);
    for (const dp of [nat, plain]) p.syn.forEach((s) => dp.decide(s, { now: NOW, direction: "egress" }));
    const ports = nat.nat.list(f === 4 ? "nat4" : "nat6").filter((r) => r.dir === "egress").sort((a, b) => a.src.localeCompare(b.src)).map((r) => r.toPort);
    const replies = p.reply(ports);
    const fresh = packets(f, 1 + FLOWS);
    const w = {
      base: await wasmNs(plain, p.ack, "egress", "pass/established"),
      est: await wasmNs(nat, p.ack, "egress", "pass/established"),
      reply: await wasmNs(nat, replies, "ingress", "pass/reply"),
      fresh: 0,
    };
    const scratch = await Datapath.create(options(true));
    w.fresh = await wasmNs(scratch, fresh.syn, "egress", "pass/new", () => scratch.flush());
    let k: typeof w | undefined;
    if (!missing) {
      const kn = new Kernel(options(true)), kp = new Kernel(options(false));
      try {
        kn.run(p.syn, "egress", "pass/new", 1);
        kp.run(p.syn, "egress", "pass/new", 1);
        k = {
          base: kp.run(p.ack, "egress", "pass/established"),
          est: kn.run(p.ack, "egress", "pass/established"),
          reply: kn.run(replies, "ingress", "pass/reply"),
          fresh: 0,
        };
        let sum = 0;
        for (let i = 0; i < ROUNDS; i++) {
          kn.clear();
          sum += kn.run(fresh.syn, "egress", "pass/new", 1);
        }
        k.fresh = sum / ROUNDS;
      } finally {
        kn.close();
        kp.close();
      }
    }
    const row = (scenario: string, key: keyof typeof w) => ({
      scenario, family: `IPv${f}`, wasmNs: w[key], kernelNs: k?.[key], ratio: k ? w[key] / k[key] : undefined,
    });
    rows.push(row("established, NAT off (baseline)", "base"), row("established, translated", "est"), row("reply, translated back", "reply"), row("new flow, port allocated", "fresh"));
  }
  return rows;
}

async function capacity(): Promise<CapacityRow[]> {
  const rows: CapacityRow[] = [];
  for (const destinations of [1, 16, 256]) {
    const dp = await Datapath.create({
      hashSeed: 1,
      conntrack: { tcpEntries: 1024, otherEntries: 1 << 20, timeouts: { other: 1_000_000 } },
      nat: { ipv4: { address: MASQ4, clusterCidrs: ["10.0.0.0/8"] }, ports: { min: 20000, max: 21023 }, retries: 16, entries: 1 << 21, seed: 3 },
    });
    const attempts = 1200 * destinations;
    let rand = 12345;
    const next = () => (rand = (Math.imul(rand, 1103515245) + 12345) >>> 0);
    const batch = dp.createBatch(256);
    let firstRefusalAt = -1, created = 0;
    for (let i = 0; i < attempts; i += 256) {
      batch.clear();
      for (let k = i; k < Math.min(attempts, i + 256); k++) {
        const src = `10.${(next() >>> 8) & 255}.${(next() >>> 8) & 255}.${(next() >>> 8) & 255}`;
        const dst = `198.51.${(k % destinations) >> 8}.${(k % destinations) & 255}`;
        batch.push(packet4({ src, dst }).udp({ sport: 1024 + (next() % 64000), dport: 53 }), { direction: "egress" });
      }
      dp.process(batch, NOW);
      for (let k = 0; k < batch.length; k++) {
        if (batch.result(k).verdict === "pass") created++;
        else if (firstRefusalAt < 0) firstRefusalAt = created;
      }
    }
    const s = dp.nat.stats().nat4;
    rows.push({ destinations, attempts, mappings: Number(s.created), firstRefusalAt, refused: Number(s.allocFailed), perDestination: Number(s.created) / destinations });
  }
  return rows;
}

export async function runNat(): Promise<{ perPacket: NatRow[]; capacity: CapacityRow[] }> {
  const missing = kernelUnavailable();
  const per = await perPacket();
  printTable("NAT: ns per packet, Wasm vs kernel (same packets, same tables)", per.map((r) => ({
    scenario: r.scenario, family: r.family, "wasm ns": num(r.wasmNs, 1),
    "kernel ns": r.kernelNs === undefined ? "-" : num(r.kernelNs, 1), "wasm/kernel": r.ratio === undefined ? "-" : `${r.ratio.toFixed(2)}x`,
  })), [
    `Wasm: batches of ${FLOWS}, mean per packet. Kernel: BPF_PROG_TEST_RUN durationNs at repeat=1 (a looped run would feed the program its own rewritten packet), ${FLOWS} packets x ${ROUNDS}, test-run overhead (~100 ns) included in every kernel row.`,
    ...(missing ? [`kernel column skipped: ${missing}`] : []),
  ]);
  const cap = await capacity();
  printTable("NAT: live mappings a 1024-port range sustains (Wasm; 16 retries, random pods and source ports)", cap.map((r) => ({
    destinations: r.destinations, attempts: r.attempts, "mappings made": r.mappings, "first refusal after": r.firstRefusalAt,
    refused: r.refused, "per destination": num(r.perDestination, 1),
  })), ["A mapping's reverse key includes the remote address and port, so each destination has its own 1024 ports."]);
  return { perPacket: per, capacity: cap };
}

if (import.meta.url === `file://${process.argv[1]}`) runNat().catch((e) => { console.error(e); process.exit(1); });
