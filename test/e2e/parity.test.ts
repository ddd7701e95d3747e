/**
 * Parity: the same traffic through the two datapaths gives the same
 * observable results. Two copies of the network of host/demo/topology.ts
 * (pod1, pod2 and an external host around a node), side by side:
 *
 *   1. TUN (namespaces mbrp<pid>-*): the node's policy routing sends
 *      everything from the veths into the forwarder's TUN (Wasm datapath, no
 *      offloads); conntrack is read from the snapshot the forwarder writes
 *      when it stops.
 *   2. kernel (namespaces mbrk<pid>-*): the policy-routing rules are removed
 *      (the node forwards between the veths itself) and bpf_lxc is attached
 *      with tc to the host side of pod1's and pod2's veths (AttachedDatapath,
 *      as Cilium attaches it), each endpoint with its own pinned maps;
 *      conntrack is read from the pins.
 *
 * Each scenario is its own test and runs on its own: it starts a forwarder
 * of its own, drives its traffic (on ports no other scenario uses) through
 * both networks, waits until each datapath has counted the exchange, and
 * compares; one failing leaves the others as they were, and any one runs
 * alone with `-t`.
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
import { existsSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Datapath } from "../../host/datapath.js";
import { restoreSnapshot } from "../../host/conntrack/snapshot.js";
import { CT_TABLES, formatTuple, type CtRecord } from "../../host/conntrack/records.js";
import type { FlowSummary } from "../../host/forwarder/protocol.js";
import { AttachedDatapath } from "../../host/kernel/attached.js";
import { readPinnedConntrack, monotonicSeconds } from "../../host/kernel/pinned-conntrack.js";
import { CtEntryFlags } from "../../host/generated/layout.js";
import type { DatapathOptions } from "../../host/config.js";
import { FORWARD_RULE_PREF, FORWARD_TABLE, ForwarderTopology, type Endpoint } from "../../host/demo/topology.js";
import { demoUnavailable } from "../../host/demo/requirements.js";
import { ip } from "../../host/sys/netns/iproute2.js";
import { withNetns } from "../../host/sys/netns/enter.js";
import { describeIf } from "../support/describe-if.js";
import { waitFor } from "../support/wait-for.js";
import { ForwarderLab, type Stopped } from "./forwarder-lab.js";
import { e2eUnavailable } from "./netns.js";

const TUN_PREFIX = `mbrp${process.pid}`;
const KERNEL_PREFIX = `mbrk${process.pid}`;
const PIN_ROOT = `/sys/fs/bpf/${KERNEL_PREFIX}`;
const TIMEOUTS = { tcp: 3600, syn: 60, close: 90, other: 120 };
const OPTIONS: DatapathOptions = { conntrack: { tcpEntries: 4096, otherEntries: 4096, timeouts: TIMEOUTS } };
const ROUNDS = 3;
const CLOSED = CtEntryFlags.CT_F_TX_CLOSING | CtEntryFlags.CT_F_RX_CLOSING;

type Kind = "tcp" | "udp" | "ping";
interface Scenario {
  label: string;
  kind: Kind;
  family: 4 | 6;
  from: "pod1" | "pod2";
  to: "pod2" | "ext";
  /** Server port or echo id; the kernel side adds 100 so the two sides' flows differ. */
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

/** Where each scenario's TUN forwarder writes its snapshot. */
const snapshotOf = (s: Scenario) => join(tmpdir(), `${TUN_PREFIX}-${SCENARIOS.indexOf(s)}-conntrack.snap`);

/** One flow as a client drove it: what the client saw and the tuple to find its conntrack entry by. */
interface Driven {
  delivered: unknown;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  proto: number;
}

const addr = (e: Endpoint, family: 4 | 6) => (family === 4 ? e.v4 : e.v6);

/** The least each datapath counts for the exchange: TCP's ACK pattern depends on timing; UDP and ICMP are exact. */
const minimum = (s: Scenario) => (s.kind === "tcp" ? { tx: 4, rx: 3 } : { tx: ROUNDS, rx: ROUNDS });

describeIf("the TUN forwarder and the kernel endpoint program give the same observable results", demoUnavailable() ?? e2eUnavailable(), () => {
  const tunLab = new ForwarderLab(TUN_PREFIX, SCENARIOS.map(snapshotOf));
  let kernel: ForwarderTopology | undefined;
  const attached: AttachedDatapath[] = [];

  /** Runs one scenario on topology `t` with server port (or echo id) `port`. */
  async function drive(t: ForwarderTopology, s: Scenario, port: number): Promise<Driven> {
    const from = t.endpoints[s.from];
    const to = t.endpoints[s.to];
    const src = addr(from, s.family);
    const dst = addr(to, s.family);
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
    return { delivered, src, dst, sport, dport: port, proto };
  }

  const isFlow = (d: Driven) => (r: CtRecord) =>
    r.tuple.src === d.src && r.tuple.dst === d.dst && r.tuple.sport === d.sport && r.tuple.dport === d.dport && r.tuple.proto === d.proto;

  /** The one entry of flow `d` among `records`. */
  function entryOf(side: string, s: Scenario, d: Driven, records: CtRecord[]): CtRecord {
    const found = records.filter(isFlow(d));
    expect(found, `${side}: ${s.label} (${formatTuple({ family: s.family, ...d, flags: 0 })})`).toHaveLength(1);
    return found[0]!;
  }

  /** Through a forwarder of this scenario's own: drive, wait until its report counts the whole exchange, stop, read the snapshot. */
  async function throughTun(s: Scenario): Promise<{ delivered: unknown; record: CtRecord }> {
    const snapshot = snapshotOf(s);
    // Two queues moved by the deciding thread itself (the default on 2 CPUs); the forwarder e2e test runs the I/O threads.
    await tunLab.start({ options: OPTIONS, device: { queues: 2, ioWorkers: false }, snapshotPath: snapshot });
    let d: Driven;
    let stopped: Stopped | undefined;
    try {
      d = await drive(tunLab.topo!, s, s.port);
      const min = minimum(s);
      const flow = formatTuple({ family: s.family, ...d, flags: 0 });
      // The last packets (a FIN's ACK) may still be on their way when the agents exit.
      await tunLab.waitForFlow(flow, (f: FlowSummary) =>
        f.txPackets >= min.tx && f.rxPackets >= min.rx && (s.kind !== "tcp" || (f.state.includes("tx-closing") && f.state.includes("rx-closing"))));
    } finally {
      ({ stopped } = await tunLab.stop());
    }
    expect(stopped.stats.dropped).toBe(0);
    const reader = await Datapath.create(OPTIONS);
    restoreSnapshot(reader, readFileSync(snapshot));
    return { delivered: d.delivered, record: entryOf("tun", s, d, [...reader.conntrack()]) };
  }

  /** Through bpf_lxc: drive, wait until the initiating endpoint's pinned conntrack counts the whole exchange. */
  async function throughKernel(s: Scenario): Promise<{ delivered: unknown; record: CtRecord }> {
    const d = await drive(kernel!, s, s.port + 100);
    const min = minimum(s);
    const pins = `${PIN_ROOT}/${s.from}`;
    // The last packets (a FIN's ACK) may still be on their way when the agents exit.
    await waitFor(
      `${s.label} counted in ${pins}`,
      () => readPinnedConntrack(pins, CT_TABLES).some(
        (r) => isFlow(d)(r) && r.entry.txPackets >= min.tx && r.entry.rxPackets >= min.rx && (s.kind !== "tcp" || (r.entry.flags & CLOSED) === CLOSED),
      ),
      { timeoutMs: 5_000, detail: () => JSON.stringify(readPinnedConntrack(pins, CT_TABLES).filter(isFlow(d)), (_k, v) => (typeof v === "bigint" ? Number(v) : v)) },
    );
    return { delivered: d.delivered, record: entryOf("kernel", s, d, readPinnedConntrack(pins, CT_TABLES)) };
  }

  async function teardownKernel(): Promise<string[]> {
    const problems: string[] = [];
    for (const d of attached.splice(0)) {
      try {
        d.detach();
      } catch (err) {
        problems.push(`detach: ${(err as Error).message}`);
      }
    }
    if (kernel) problems.push(...(await kernel.teardown()));
    rmSync(PIN_ROOT, { recursive: true, force: true });
    return problems;
  }

  beforeAll(async () => {
    await tunLab.open({}, async () => {});
    try {
      const t = (kernel = await ForwarderTopology.create(KERNEL_PREFIX));
      await t.resolveNeighbours();
      for (const e of Object.values(t.endpoints)) {
        for (const family of [4, 6] as const) {
          ip("-n", t.node, `-${family}`, "rule", "del", "iif", e.nodeIf, "lookup", String(FORWARD_TABLE), "pref", String(FORWARD_RULE_PREF));
        }
      }
      for (const e of [t.pod1, t.pod2]) {
        attached.push(withNetns(t.node, () => AttachedDatapath.attach({ ifname: e.nodeIf, point: "endpoint", options: OPTIONS, pinDir: `${PIN_ROOT}/${e.name}` })));
      }
    } catch (err) {
      const problems = [...(await teardownKernel()), ...(await tunLab.teardown())];
      if (problems.length) (err as Error).message += `; cleanup: ${problems.join("; ")}`;
      throw err;
    }
  }, 30_000);

  afterAll(async () => {
    const problems = [...(await teardownKernel()), ...(await tunLab.teardown())];
    const left = [...(kernel?.leftovers() ?? []), ...tunLab.leftovers(), ...(existsSync(PIN_ROOT) ? [PIN_ROOT] : [])];
    if (problems.length || left.length) throw new Error(`cleanup incomplete: ${[...problems, ...left].join("; ")}`);
  }, 30_000);

  it.each(SCENARIOS.map((s) => [s.label, s] as const))("%s: same delivery and the same conntrack entry", async (_label, s) => {
    const tun = await throughTun(s);
    const kern = await throughKernel(s);
    expect(kern.delivered).toEqual(tun.delivered);
    const a = tun.record;
    const b = kern.record;
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
  }, 60_000);

  it("removes everything it made", async () => {
    expect([...(await teardownKernel()), ...(await tunLab.teardown())]).toEqual([]);
    expect([...kernel!.leftovers(), ...tunLab.leftovers()]).toEqual([]);
    expect(existsSync(PIN_ROOT)).toBe(false);
  }, 30_000);
});
