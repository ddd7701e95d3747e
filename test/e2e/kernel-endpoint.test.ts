/**
 * End to end: bpf_lxc attached with AttachedDatapath to a real veth, real
 * TCP, UDP and ping traffic through it, and the kernel's conntrack read back
 * through membrane's own map API (readPinnedConntrack, `membrane bpf ct list`).
 *
 * Topology (two namespaces, one veth; nothing is created in the test's own
 * namespace except the bpffs pin directory):
 *
 *     mbr-e2e-<pid>-pod                      mbr-e2e-<pid>-peer
 *     eth0  10.250.0.2/24  <--- veth --->  lxc<pid>  10.250.0.1/24
 *           fd00:250::2/64                           fd00:250::1/64
 *                                          ^ bpf_lxc: from_container at tc ingress,
 *                                                     to_container at tc egress
 *
 * The peer namespace plays Cilium's host namespace: lxc<pid> is the host side
 * of the pod's veth, where Cilium attaches bpf_lxc, and the peer's addresses
 * are on it, so the peer's sockets are what the pod talks to (in Cilium, the
 * pod talking to the node). A third namespace routed through the host would
 * be closer to a pod-to-pod path but needs IP forwarding (IPv6 forwarding is
 * global to a namespace), and it adds nothing the endpoint program can see:
 * it sees the same packets on the same device either way. The test process
 * enters the peer namespace only to attach and detach (tc and if_nametoindex
 * work on the caller's namespace); traffic runs in child processes started
 * with `ip netns exec`. ICMP goes through ping sockets via koffi
 * (host/demo/agent.ts), so no ping binary is needed.
 *
 * Every flow runs in both directions: "pod -> peer" flows are created by the
 * pod's egress packets (from_container) and stored with TUPLE_F_OUT; "peer ->
 * pod" flows are created at the pod's ingress (to_container) with TUPLE_F_IN.
 */
import { readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { AttachedDatapath } from "../../host/kernel/attached.js";
import { readPinnedConntrack, monotonicSeconds } from "../../host/kernel/pinned-conntrack.js";
import { run } from "../../host/cli/main.js";
import { BpfMap } from "../../host/bpf/map.js";
import { CT_TABLES, formatTuple, type CtRecord, type CtTableName } from "../../host/conntrack/records.js";
import { CtEntryFlags, TupleFlags, decodeMetricsValue, dropReasonName } from "../../host/generated/layout.js";
import type { DatapathOptions } from "../../host/config.js";
import { e2eUnavailable, Topology, netnsList, tc, withNetns } from "./netns.js";
import { waitFor } from "../support/wait-for.js";
import { describeIf } from "../support/describe-if.js";

const ADDRS = { pod4: "10.250.0.2", peer4: "10.250.0.1", pod6: "fd00:250::2", peer6: "fd00:250::1" };
const TAG = String(process.pid);
const PIN_DIR = `/sys/fs/bpf/membrane-test-${TAG}`;

/** Small tables (the defaults preallocate a million TCP entries) and timeouts that tell the cases apart. */
const TIMEOUTS = { tcp: 3600, syn: 60, close: 90, other: 120 };
const OPTIONS: DatapathOptions = { conntrack: { tcpEntries: 4096, otherEntries: 4096, timeouts: TIMEOUTS } };

const ROUNDS = 3; // UDP requests and echo requests per flow

type Proto = "tcp" | "udp" | "icmp";
interface Flow {
  label: string;
  proto: Proto;
  family: 4 | 6;
  /** Who opens the flow. */
  by: "pod" | "peer";
  /** Server port, or the echo identifier for ICMP. */
  port: number;
}

const FLOWS: Flow[] = [];
for (const proto of ["tcp", "udp", "icmp"] as const) {
  for (const family of [4, 6] as const) {
    for (const by of ["pod", "peer"] as const) {
      const port = (proto === "icmp" ? 4200 : 5000) + FLOWS.length;
      FLOWS.push({ label: `${proto.toUpperCase()} IPv${family} ${by === "pod" ? "pod -> peer" : "peer -> pod"}`, proto, family, by, port });
    }
  }
}

const PROTO_NUMBER = { tcp: 6, udp: 17, icmp4: 1, icmp6: 58 } as const;

function protoNumber(f: Flow): number {
  return f.proto === "icmp" ? (f.family === 4 ? PROTO_NUMBER.icmp4 : PROTO_NUMBER.icmp6) : PROTO_NUMBER[f.proto];
}

function tableOf(f: Flow): CtTableName {
  return `${f.proto === "tcp" ? "tcp" : "any"}${f.family}` as CtTableName;
}

function addressesOf(f: Flow): { src: string; dst: string } {
  const pod = f.family === 4 ? ADDRS.pod4 : ADDRS.pod6;
  const peer = f.family === 4 ? ADDRS.peer4 : ADDRS.peer6;
  return f.by === "pod" ? { src: pod, dst: peer } : { src: peer, dst: pod };
}

/**
 * The fewest packets each way a completed exchange puts on the wire.
 * TCP, original direction: SYN, the handshake's ACK (or the data it rides
 * on), data, FIN; reply: SYN-ACK, the echoed data, FIN. UDP and ICMP: one
 * request and one reply per round.
 */
function minimumPackets(f: Flow): { tx: number; rx: number } {
  return f.proto === "tcp" ? { tx: 4, rx: 3 } : { tx: ROUNDS, rx: ROUNDS };
}

interface Observed {
  flow: Flow;
  record: CtRecord;
}

const TCP_SYN = 0x02, TCP_FIN = 0x01, TCP_ACK = 0x10;
const CLOSED = CtEntryFlags.CT_F_TX_CLOSING | CtEntryFlags.CT_F_RX_CLOSING | CtEntryFlags.CT_F_SEEN_NON_SYN;

function sumPerCpu(map: BpfMap, slot: number): { packets: bigint; bytes: bigint } {
  const key = new Uint8Array(4);
  new DataView(key.buffer).setUint32(0, slot, true);
  const total = { packets: 0n, bytes: 0n };
  const value = map.lookup(key);
  if (!value) return total;
  for (const cpu of map.perCpuValues(value)) {
    const v = decodeMetricsValue(cpu);
    total.packets += v.packets;
    total.bytes += v.bytes;
  }
  return total;
}

describeIf("bpf_lxc on a veth between network namespaces", e2eUnavailable(), () => {
  const topo = new Topology(TAG, ADDRS);
  let dp: AttachedDatapath | undefined;
  const observed: Observed[] = [];

  /** Idempotent: detach, kill agents, delete namespaces (and the veth with them), remove the pins. */
  async function teardown(): Promise<string[]> {
    const problems: string[] = [];
    if (dp) {
      const d = dp;
      dp = undefined;
      try {
        // A TcAttachment detaches in the namespace it was attached in by itself; entering it here is only explicit.
        if (netnsList().includes(topo.peer)) withNetns(topo.peer, () => d.detach());
        else d.object.close();
      } catch (err) {
        problems.push(`detach: ${(err as Error).message}`);
        try {
          d.object.close();
        } catch {
          // closed already
        }
      }
    }
    problems.push(...(await topo.destroy()));
    try {
      rmSync(PIN_DIR, { recursive: true, force: true });
    } catch (err) {
      problems.push(`remove ${PIN_DIR}: ${(err as Error).message}`);
    }
    return problems;
  }

  beforeAll(async () => {
    try {
      topo.create();
      await topo.waitUp();
      // On a veth just brought up, the first IPv6 neighbour solicitation goes unanswered for about a
      // second (seen with tcpdump: the peer receives it, no advertisement). Resolve neighbours now,
      // before attaching, so the flows below run without retransmissions.
      await Promise.all([topo.agent(topo.pod, ["ping", ADDRS.peer4, 1, 1]).result(8_000), topo.agent(topo.pod, ["ping", ADDRS.peer6, 1, 1]).result(8_000)]);
      dp = withNetns(topo.peer, () => AttachedDatapath.attach({ ifname: topo.lxc, point: "endpoint", options: OPTIONS, pinDir: PIN_DIR }));
    } catch (err) {
      await teardown();
      throw err;
    }
  }, 20_000);

  afterAll(async () => {
    const problems = await teardown();
    const left = topo.leftovers(PIN_DIR);
    if (problems.length || left.length) throw new Error(`cleanup incomplete: ${[...problems, ...left].join("; ")}`);
  }, 20_000);

  it("attaches from_container at tc ingress and to_container at tc egress of the host-side veth", () => {
    expect(dp).toBeDefined();
    expect(dp!.attachments.map((a) => a.direction)).toEqual(["ingress", "egress"]);
    // As tc itself lists them: our programs, by name and kernel id, in direct-action mode.
    for (const a of dp!.attachments) {
      const shown = tc("-n", topo.peer, "filter", "show", "dev", topo.lxc, a.direction);
      expect(shown).toMatch(a.direction === "ingress" ? /from_container/ : /to_container/);
      expect(shown).toMatch(new RegExp(`direct-action.* id ${a.progId}\\b`));
    }
    // The maps are pinned where we asked (the CLI and a restarted agent read them there).
    expect(readdirSync(PIN_DIR)).toEqual(expect.arrayContaining(["ct_tcp4", "ct_any4", "ct_tcp6", "ct_any6", "metrics", "config"]));
  });

  it.each(FLOWS)("$label: tracked with its tuple, direction, counts and state", async (flow) => {
    const clientNs = flow.by === "pod" ? topo.pod : topo.peer;
    const serverNs = flow.by === "pod" ? topo.peer : topo.pod;
    const { src, dst } = addressesOf(flow);
    let sport: number;
    let dport: number;
    if (flow.proto === "icmp") {
      const r = await topo.agent(clientNs, ["ping", dst, flow.port, ROUNDS]).result<{ replies: number; id: number }>(8_000);
      expect(r.replies).toBe(ROUNDS);
      // Echo requests are keyed by identifier: sport 0, dport id (README, "ICMP").
      sport = 0;
      dport = flow.port;
    } else if (flow.proto === "tcp") {
      const server = topo.agent(serverNs, ["tcp-server", dst, flow.port]);
      await server.ready();
      const message = `hello from the ${flow.by} over IPv${flow.family}`;
      const client = topo.agent(clientNs, ["tcp-client", dst, flow.port, message]);
      const [c, s] = await Promise.all([client.result<{ reply: string; localPort: number }>(8_000), server.result<{ received: string; remoteAddress: string; remotePort: number }>(8_000)]);
      expect(c.reply).toBe(`echo:${message}`);
      expect(s.received).toBe(message);
      expect([s.remoteAddress, s.remotePort]).toEqual([src, c.localPort]);
      sport = c.localPort;
      dport = flow.port;
    } else {
      const server = topo.agent(serverNs, ["udp-server", dst, flow.port, ROUNDS]);
      await server.ready();
      const client = topo.agent(clientNs, ["udp-client", dst, flow.port, ROUNDS]);
      const [c, s] = await Promise.all([
        client.result<{ replies: number; localPort: number }>(8_000),
        server.result<{ answered: number; remotePort: number }>(8_000),
      ]);
      expect(c.replies).toBe(ROUNDS);
      expect(s.answered).toBeGreaterThanOrEqual(ROUNDS);
      expect(s.remotePort).toBe(c.localPort);
      sport = c.localPort;
      dport = flow.port;
    }

    const min = minimumPackets(flow);
    const proto = protoNumber(flow);
    const table = tableOf(flow);
    const matches = (r: CtRecord) =>
      r.tuple.src === src && r.tuple.dst === dst && r.tuple.sport === sport && r.tuple.dport === dport && r.tuple.proto === proto;
    // The last packets (a FIN's ACK) may still be in flight when the agents exit: wait, bounded.
    const record = await waitFor(
      `${flow.label} in ct_${table}`,
      () =>
        readPinnedConntrack(PIN_DIR, [table]).find(
          (r) => matches(r) && r.entry.txPackets >= min.tx && r.entry.rxPackets >= min.rx && (proto !== 6 || r.entry.flags === CLOSED),
        ),
      {
        timeoutMs: 3_000,
        detail: () => {
          const seen = readPinnedConntrack(PIN_DIR, CT_TABLES).filter(matches);
          return `matching entries: ${JSON.stringify(seen, (_k, v) => (typeof v === "bigint" ? Number(v) : v))}`;
        },
      },
    );
    const now = monotonicSeconds();

    expect(record.table).toBe(table);
    expect(record.tuple.family).toBe(flow.family);
    expect(record.tuple.flags).toBe(flow.by === "pod" ? TupleFlags.TUPLE_F_OUT : TupleFlags.TUPLE_F_IN);
    // One entry per flow: replies found it instead of creating their own (no entry under the reversed tuple).
    const all = readPinnedConntrack(PIN_DIR, [table]);
    expect(all.filter(matches)).toHaveLength(1);
    expect(all.filter((r) => r.tuple.src === dst && r.tuple.dst === src && r.tuple.sport === dport && r.tuple.dport === sport && r.tuple.proto === proto)).toEqual([]);

    expect(record.entry.txPackets).toBeGreaterThanOrEqual(BigInt(min.tx));
    expect(record.entry.rxPackets).toBeGreaterThanOrEqual(BigInt(min.rx));
    const header = BigInt((flow.family === 4 ? 20 : 40) + 8);
    expect(record.entry.txBytes).toBeGreaterThanOrEqual(record.entry.txPackets * header);
    expect(record.entry.rxBytes).toBeGreaterThanOrEqual(record.entry.rxPackets * header);

    if (flow.proto === "tcp") {
      // Both FINs seen: the entry is closing both ways and on the close timeout.
      expect(record.entry.flags).toBe(CLOSED);
      for (const seen of [record.entry.txFlagsSeen, record.entry.rxFlagsSeen]) {
        expect(seen & (TCP_SYN | TCP_ACK | TCP_FIN)).toBe(TCP_SYN | TCP_ACK | TCP_FIN);
      }
      expect(record.entry.lifetime - now).toBeLessThanOrEqual(TIMEOUTS.close);
      expect(record.entry.lifetime - now).toBeGreaterThan(TIMEOUTS.close - 10);
    } else {
      expect(record.entry.flags).toBe(0);
      expect(record.entry.txFlagsSeen | record.entry.rxFlagsSeen).toBe(0);
      expect(record.entry.lifetime - now).toBeLessThanOrEqual(TIMEOUTS.other);
      expect(record.entry.lifetime - now).toBeGreaterThan(TIMEOUTS.other - 10);
    }
    observed.push({ flow, record });
  }, 20_000);

  it("`membrane bpf ct list --json` reports the same flows", async () => {
    expect(observed).toHaveLength(FLOWS.length);
    const out: string[] = [];
    const err: string[] = [];
    const code = await run(["bpf", "ct", "list", "--pin-dir", PIN_DIR, "--json"], { out: (l) => out.push(l), err: (l) => err.push(l) });
    expect(err).toEqual([]);
    expect(code).toBe(0);
    const rows = out.map((l) => JSON.parse(l) as Record<string, unknown>);
    for (const { flow, record } of observed) {
      const row = rows.filter(
        (r) => r.table === record.table && r.src === record.tuple.src && r.dst === record.tuple.dst && r.sport === record.tuple.sport && r.dport === record.tuple.dport && r.proto === record.tuple.proto,
      );
      expect(row, flow.label).toHaveLength(1);
      expect(row[0]!.createdBy, flow.label).toBe(flow.by === "pod" ? "out" : "in");
      expect(row[0]!.family).toBe(flow.family);
      // Nothing more was sent on these flows since they were read.
      expect(row[0]!.txPackets, flow.label).toBe(Number(record.entry.txPackets));
      expect(row[0]!.rxPackets, flow.label).toBe(Number(record.entry.rxPackets));
      expect(row[0]!.flags, flow.label).toBe(record.entry.flags);
    }

    // The table form names each flow the way formatTuple does.
    const text: string[] = [];
    expect(await run(["bpf", "ct", "list", "--pin-dir", PIN_DIR], { out: (l) => text.push(l), err: (l) => text.push(l) })).toBe(0);
    const table = text.join("\n");
    expect(table).toContain(`Kernel conntrack in ${PIN_DIR}`);
    for (const { record } of observed) expect(table).toContain(formatTuple(record.tuple));
  });

  it("counts every tracked packet as forwarded in the metrics map, and drops nothing", () => {
    const metrics = BpfMap.openPinned(join(PIN_DIR, "metrics"));
    try {
      const forwarded = { egress: sumPerCpu(metrics, 0), ingress: sumPerCpu(metrics, 1) };
      const drops: string[] = [];
      for (let slot = 2; slot < metrics.maxEntries; slot++) {
        const v = sumPerCpu(metrics, slot);
        if (v.packets > 0n) drops.push(`${dropReasonName[slot >> 1] ?? slot >> 1} ${slot & 1 ? "ingress" : "egress"}: ${v.packets}`);
      }
      expect(drops).toEqual([]);
      // Packets of our flows that left the pod (from_container, egress) and entered it (to_container, ingress).
      let egress = 0n;
      let ingress = 0n;
      for (const { flow, record } of observed) {
        const { txPackets, rxPackets } = record.entry;
        if (flow.by === "pod") {
          egress += txPackets;
          ingress += rxPackets;
        } else {
          egress += rxPackets;
          ingress += txPackets;
        }
      }
      expect(egress).toBeGreaterThan(0n);
      expect(forwarded.egress.packets).toBeGreaterThanOrEqual(egress);
      expect(forwarded.ingress.packets).toBeGreaterThanOrEqual(ingress);
      expect(forwarded.egress.bytes).toBeGreaterThan(0n);
      expect(forwarded.ingress.bytes).toBeGreaterThan(0n);
    } finally {
      metrics.close();
    }
  });

  it("removes the namespaces, the veth, the pins and the agents", async () => {
    expect(await teardown()).toEqual([]);
    expect(topo.leftovers(PIN_DIR)).toEqual([]);
  }, 20_000);
});
