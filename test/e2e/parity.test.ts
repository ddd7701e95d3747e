/**
 * Parity: the same traffic through the two datapaths gives the same
 * observable results. The network is host/demo/topology.ts (pod1, pod2 and
 * an external host around a node; namespaces mbr-parity-<pid>-*):
 *
 *   1. TUN: the node's policy routing sends everything from the veths into
 *      the forwarder's TUN (Wasm datapath, no offloads); conntrack is read
 *      from the snapshot the forwarder writes when it stops.
 *   2. kernel: the policy-routing rules are removed (the node forwards
 *      between the veths itself) and bpf_lxc is attached with tc to the
 *      host side of pod1's and pod2's veths (AttachedDatapath, as Cilium
 *      attaches it), each endpoint with its own pinned maps; conntrack is
 *      read from the pins.
 *
 * Scenarios, run identically in both: TCP pod1 -> pod2 (connect, message,
 * echo, close), UDP pod1 -> ext (3 requests and replies), ping pod2 -> ext
 * and pod1 -> pod2 (3 echoes), over IPv4 and IPv6. Compared: what the
 * clients got (delivery, replies), and the flow's conntrack entry as the
 * initiating endpoint's datapath holds it (the TUN forwarder decides every
 * flow at one place, where the initiator's packets are egress): table,
 * tuple (addresses, ports, protocol, OUT flag), entry flags, TCP flags seen
 * each way, remaining lifetime (same timeouts, both on CLOCK_MONOTONIC), and
 * packet counts: exact for UDP and ICMP; for TCP, whose ACK pattern depends
 * on timing, both sides at least the exchange's minimum.
 * Bytes too, for UDP and ICMP: both datapaths count the IP packet's length
 * (tc sees the Ethernet frame, the TUN the bare packet).
 */
import { readFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ForwarderHandle } from "../../host/forwarder/controller.js";
import { Datapath } from "../../host/datapath.js";
import { restoreSnapshot } from "../../host/conntrack/snapshot.js";
import { CT_TABLES, formatTuple, type CtRecord } from "../../host/conntrack/records.js";
import { AttachedDatapath } from "../../host/kernel/attached.js";
import { readPinnedConntrack, monotonicSeconds } from "../../host/kernel/pinned-conntrack.js";
import type { DatapathOptions } from "../../host/config.js";
import { FORWARD_RULE_PREF, FORWARD_TABLE, ForwarderTopology, type Endpoint } from "../../host/demo/topology.js";
import { demoUnavailable } from "../../host/demo/requirements.js";
import { ip } from "../../host/sys/netns/iproute2.js";
import { withNetns } from "../../host/sys/netns/enter.js";
import { e2eUnavailable } from "./netns.js";

const MISSING = demoUnavailable() ?? e2eUnavailable();
if (MISSING && process.env.CI === "true") throw new Error(`parity tests cannot run in CI: ${MISSING}`);
if (MISSING) console.warn(`skipping the TUN/kernel parity tests: ${MISSING}`);

const PREFIX = `mbr-parity-${process.pid}`;
const TUN = `mbrp${process.pid}-tun`.slice(0, 15);
const SNAPSHOT = join(tmpdir(), `${PREFIX}-conntrack.snap`);
const PIN_ROOT = `/sys/fs/bpf/${PREFIX}`;
const TIMEOUTS = { tcp: 3600, syn: 60, close: 90, other: 120 };
const OPTIONS: DatapathOptions = { conntrack: { tcpEntries: 4096, otherEntries: 4096, timeouts: TIMEOUTS } };
const ROUNDS = 3;

type Kind = "tcp" | "udp" | "ping";
interface Scenario {
  label: string;
  kind: Kind;
  family: 4 | 6;
  from: "pod1" | "pod2";
  to: "pod2" | "ext";
  /** Server port or echo id; each datapath's run adds its own offset so no flow is reused. */
  port: number;
}

const SCENARIOS: Scenario[] = [];
for (const family of [4, 6] as const) {
  SCENARIOS.push(
    { label: `TCP IPv${family} pod1 -> pod2`, kind: "tcp", family, from: "pod1", to: "pod2", port: 7800 + family },
    { label: `UDP IPv${family} pod1 -> ext`, kind: "udp", family, from: "pod1", to: "ext", port: 7810 + family },
    { label: `ping IPv${family} pod2 -> ext`, kind: "ping", family, from: "pod2", to: "ext", port: 7820 + family },
    { label: `ping IPv${family} pod1 -> pod2`, kind: "ping", family, from: "pod1", to: "pod2", port: 7830 + family },
  );
}

interface Outcome {
  /** What the client saw. */
  delivered: unknown;
  record: CtRecord;
}

type Side = "tun" | "kernel";
const outcomes: Record<Side, Map<string, Outcome>> = { tun: new Map(), kernel: new Map() };
/** Sources of each side's flows, filled while traffic runs, resolved to records afterwards. */
const flows: Record<Side, Map<string, { src: string; dst: string; sport: number; dport: number; proto: number; delivered: unknown }>> = {
  tun: new Map(), kernel: new Map(),
};

const addr = (e: Endpoint, family: 4 | 6) => (family === 4 ? e.v4 : e.v6);

describe.skipIf(MISSING !== undefined)("the TUN forwarder and the kernel endpoint program give the same observable results", () => {
  let topo: ForwarderTopology | undefined;
  let fwd: ForwarderHandle | undefined;
  const attached: AttachedDatapath[] = [];

  /** Runs one scenario; returns what the client saw and the flow's tuple. */
  async function drive(s: Scenario, side: Side): Promise<void> {
    const t = topo!;
    const from = t.endpoints[s.from];
    const to = t.endpoints[s.to];
    const src = addr(from, s.family);
    const dst = addr(to, s.family);
    const port = s.port + (side === "kernel" ? 100 : 0);
    let sport = 0;
    let delivered: unknown;
    if (s.kind === "tcp") {
      const server = t.agent(to, ["tcp-server", dst, port]);
      await server.ready();
      const message = `parity over IPv${s.family}`;
      const [c, srv] = await Promise.all([
        t.agent(from, ["tcp-client", dst, port, message]).result<{ reply: string; localPort: number }>(8_000),
        server.result<{ received: string; remoteAddress: string }>(8_000),
      ]);
      sport = c.localPort;
      delivered = { reply: c.reply, received: srv.received, remoteAddress: srv.remoteAddress };
    } else if (s.kind === "udp") {
      const server = t.agent(to, ["udp-server", dst, port, ROUNDS]);
      await server.ready();
      const [c, srv] = await Promise.all([
        t.agent(from, ["udp-client", dst, port, ROUNDS]).result<{ replies: number; sent: number; localPort: number }>(8_000),
        server.result<{ answered: number }>(8_000),
      ]);
      sport = c.localPort;
      delivered = { replies: c.replies, sent: c.sent, answered: srv.answered };
    } else {
      const r = await t.agent(from, ["ping", dst, port, ROUNDS]).result<{ replies: number }>(10_000);
      delivered = { replies: r.replies };
    }
    const proto = s.kind === "tcp" ? 6 : s.kind === "udp" ? 17 : s.family === 4 ? 1 : 58;
    // Echo requests are keyed by identifier: sport 0, dport id.
    flows[side].set(s.label, { src, dst, sport, dport: port, proto, delivered });
  }

  /** Each scenario's entry among `records`, waiting (bounded) until the exchange's last packets are counted. */
  function resolve(side: Side, records: CtRecord[]): void {
    for (const s of SCENARIOS) {
      const f = flows[side].get(s.label);
      if (!f) continue;
      const found = records.filter((r) => r.tuple.src === f.src && r.tuple.dst === f.dst && r.tuple.sport === f.sport && r.tuple.dport === f.dport && r.tuple.proto === f.proto);
      expect(found, `${side}: ${s.label} (${formatTuple({ family: s.family, ...f, flags: 0 })})`).toHaveLength(1);
      outcomes[side].set(s.label, { delivered: f.delivered, record: found[0]! });
    }
  }

  async function teardown(): Promise<string[]> {
    const problems: string[] = [];
    if (fwd) {
      const h = fwd;
      fwd = undefined;
      await h.stop().catch((e: Error) => problems.push(`stop forwarder: ${e.message}`));
      await topo?.releaseTun().catch((e: Error) => problems.push(e.message));
    }
    for (const d of attached.splice(0)) {
      try {
        d.detach();
      } catch (err) {
        problems.push(`detach: ${(err as Error).message}`);
      }
    }
    if (topo) problems.push(...(await topo.teardown()));
    rmSync(SNAPSHOT, { force: true });
    rmSync(PIN_ROOT, { recursive: true, force: true });
    return problems;
  }

  beforeAll(async () => {
    try {
      topo = await ForwarderTopology.create(PREFIX);
      await topo.resolveNeighbours();
    } catch (err) {
      await teardown();
      throw err;
    }
  }, 30_000);

  afterAll(async () => {
    const problems = await teardown();
    const left = [...(topo?.leftovers() ?? []), ...[SNAPSHOT, PIN_ROOT].filter((p) => existsSync(p))];
    if (problems.length || left.length) throw new Error(`cleanup incomplete: ${[...problems, ...left].join("; ")}`);
  }, 30_000);

  it("through the TUN forwarder", async () => {
    fwd = await ForwarderHandle.start({ options: OPTIONS, device: { name: TUN, queues: 2 }, snapshotPath: SNAPSHOT });
    topo!.attachTun(fwd.ready.device);
    for (const s of SCENARIOS) await drive(s, "tun");
    // The last packets (a FIN's ACK) may still be on their way when the agents exit.
    await new Promise((r) => setTimeout(r, 300));
    const h = fwd;
    fwd = undefined;
    const stopped = await h.stop();
    await topo!.releaseTun();
    expect(stopped.stats.dropped).toBe(0);
    const reader = await Datapath.create(OPTIONS);
    restoreSnapshot(reader, readFileSync(SNAPSHOT));
    resolve("tun", [...reader.conntrack()]);
  }, 60_000);

  it("through bpf_lxc on the endpoints' veths, the node forwarding", async () => {
    const t = topo!;
    for (const e of Object.values(t.endpoints)) {
      for (const family of [4, 6] as const) {
        ip("-n", t.node, `-${family}`, "rule", "del", "iif", e.nodeIf, "lookup", String(FORWARD_TABLE), "pref", String(FORWARD_RULE_PREF));
      }
    }
    for (const e of [t.pod1, t.pod2]) {
      attached.push(withNetns(t.node, () => AttachedDatapath.attach({ ifname: e.nodeIf, point: "endpoint", options: OPTIONS, pinDir: `${PIN_ROOT}/${e.name}` })));
    }
    for (const s of SCENARIOS) await drive(s, "kernel");
    await new Promise((r) => setTimeout(r, 300));
    for (const from of ["pod1", "pod2"] as const) {
      const records = readPinnedConntrack(`${PIN_ROOT}/${from}`, CT_TABLES);
      const mine = SCENARIOS.filter((s) => s.from === from);
      const saved = [...flows.kernel];
      flows.kernel = new Map(saved.filter(([label]) => mine.some((s) => s.label === label)));
      resolve("kernel", records);
      flows.kernel = new Map(saved);
    }
  }, 60_000);

  it.each(SCENARIOS.map((s) => [s.label, s] as const))("%s: same delivery and the same conntrack entry", (_label, s) => {
    const tun = outcomes.tun.get(s.label);
    const kernel = outcomes.kernel.get(s.label);
    expect(tun, "TUN side ran").toBeDefined();
    expect(kernel, "kernel side ran").toBeDefined();
    expect(kernel!.delivered).toEqual(tun!.delivered);
    const a = tun!.record;
    const b = kernel!.record;
    const shape = (r: CtRecord) => ({
      table: r.table, family: r.tuple.family, src: r.tuple.src, dst: r.tuple.dst, proto: r.tuple.proto, flags: r.tuple.flags,
      entryFlags: r.entry.flags, txFlagsSeen: r.entry.txFlagsSeen, rxFlagsSeen: r.entry.rxFlagsSeen,
    });
    expect(shape(b)).toEqual(shape(a));
    // The ports differ only by the per-side offset (and the client's ephemeral port).
    expect(b.tuple.dport - a.tuple.dport).toBe(100);
    const now = monotonicSeconds();
    const left = (r: CtRecord) => r.entry.lifetime - now;
    expect(Math.abs(left(a) - left(b))).toBeLessThanOrEqual(30);
    const timeout = s.kind === "tcp" ? TIMEOUTS.close : TIMEOUTS.other;
    expect(left(a)).toBeLessThanOrEqual(timeout);
    expect(left(b)).toBeLessThanOrEqual(timeout);
    if (s.kind === "tcp") {
      for (const r of [a, b]) {
        expect(r.entry.txPackets).toBeGreaterThanOrEqual(4n);
        expect(r.entry.rxPackets).toBeGreaterThanOrEqual(3n);
      }
    } else {
      expect([b.entry.txPackets, b.entry.rxPackets]).toEqual([a.entry.txPackets, a.entry.rxPackets]);
      expect([b.entry.txBytes, b.entry.rxBytes]).toEqual([a.entry.txBytes, a.entry.rxBytes]);
    }
  });

  it("removes everything it made", async () => {
    expect(await teardown()).toEqual([]);
    expect(topo!.leftovers()).toEqual([]);
    expect([SNAPSHOT, PIN_ROOT].filter((p) => existsSync(p))).toEqual([]);
  }, 30_000);
});
