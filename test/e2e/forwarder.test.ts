/**
 * End to end: the userspace forwarder (ForwarderHandle: a worker thread, a
 * real TUN device, the Wasm datapath) as the only path between network
 * namespaces, with real TCP, UDP and ping traffic, and a restart that keeps
 * an established TCP connection alive through the conntrack snapshot.
 *
 * Topology (host/demo/topology.ts; every namespace named mbrf<pid>-*):
 *
 *     pod1 10.200.1.2 fd00:200:1::2 ─┐                  ┌─ TUN (the forwarder's worker)
 *     pod2 10.200.2.2 fd00:200:2::2 ─┼─ veths ── node ──┤
 *     ext  10.200.9.2 fd00:200:9::2 ─┘                  └─ table 100: default dev <tun>; unreachable otherwise
 *
 * The node routes every packet that arrives from a veth into the TUN (ip
 * rule iif lxc-* lookup 100); what the forwarder writes back is routed by
 * the main table to the destination's veth. So a flow works only when the
 * forwarder passes both directions, and each test shows it did: the flow is
 * in the worker's reports with packets both ways. Stopping the forwarder
 * (its TUN disappears) leaves only the unreachable route: pings fail.
 *
 * Masquerading (host/demo/nat.ts, topology.ts "masquerade"): ext is outside
 * the cluster and has a route to its own subnet only; the datapath SNATs the
 * pods' traffic to it to the node's ext-link address, and the node steers the
 * replies to that address into the TUN. ext's servers report the peer they
 * saw: the node, for TCP, UDP and ping, in both families, and the pods get
 * their replies, which they could not without the translation back. The NAT
 * range starts at 32768 (NAT_PORTS): the pods' ephemeral ports are kept, the
 * ping's echo identifier (below it) is remapped, and ext sees the remapped one.
 *
 * Services (host/demo/services.ts): a VIP per family in front of pod2; TCP
 * and UDP to the VIP reach a pod2 backend (DNAT), the answers come from the
 * VIP (reverse NAT), and the forwarder's report counts the flow on the
 * backend that answered.
 *
 * The restart: a TCP connection pod1 -> pod2 sends a line every 200 ms and
 * the server echoes it. The forwarder is stopped (conntrack snapshot
 * written), a new one restores the snapshot and its TUN is attached; the
 * client sees every echo in order and no reset or close, and the flow's
 * entry in the new forwarder carries on counting from the snapshot.
 */
import { existsSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { ForwarderHandle } from "../../host/forwarder/controller.js";
import type { FlowSummary } from "../../host/forwarder/protocol.js";
import { Datapath } from "../../host/datapath.js";
import { restoreSnapshot } from "../../host/conntrack/snapshot.js";
import { formatTuple } from "../../host/conntrack/records.js";
import type { DatapathOptions } from "../../host/config.js";
import type { ForwarderTopology } from "../../host/demo/topology.js";
import { demoUnavailable } from "../../host/demo/requirements.js";
import { runDemo, type DemoSummary, type ExtPeer } from "../../host/demo/demo.js";
import { NAT_PORTS } from "../../host/demo/topology.js";
import { linkNames, netnsList } from "../../host/sys/netns/iproute2.js";
import { sweep } from "../../host/sys/netns/lab.js";
import { demoNat } from "../../host/demo/nat.js";
import { describeIf } from "../support/describe-if.js";
import { waitFor } from "../support/wait-for.js";
import { ForwarderLab, type Stopped } from "./forwarder-lab.js";
import { BACKEND_TCP_PORTS, BACKEND_UDP_PORT, SERVICE_TCP_PORT, SERVICE_UDP_PORT, SERVICE_VIP4, SERVICE_VIP6, demoServices } from "../../host/demo/services.js";

const PREFIX = `mbrf${process.pid}`;
const SNAPSHOT = join(tmpdir(), `${PREFIX}-conntrack.snap`);
const OPTIONS: DatapathOptions = { conntrack: { tcpEntries: 4096, otherEntries: 4096 } };
const ROUNDS = 3;

/** The identifier a fresh echo flow with identifier `id` leaves the node with: kept inside the NAT range, else its first candidate (docs/nat.md). */
function translatedEchoId(id: number): number {
  const range = NAT_PORTS.max - NAT_PORTS.min + 1;
  return id >= NAT_PORTS.min && id <= NAT_PORTS.max ? id : NAT_PORTS.min + (id % range);
}

describeIf("the TUN forwarder between network namespaces", demoUnavailable(), () => {
  const lab = new ForwarderLab(PREFIX, [SNAPSHOT]);
  const TUN = lab.tun;
  let topo: ForwarderTopology | undefined;
  const latest = () => lab.latest();

  /** Starts a forwarder (restoring SNAPSHOT when it exists) and attaches its TUN to the node. */
  function startForwarder(): Promise<ForwarderHandle> {
    // Two queues with an I/O thread each (the ring hand-off, the path with more moving parts), whatever the CPU count;
    // the parity test runs two queues on one thread.
    return lab.start({ options: { ...OPTIONS, nat: demoNat(topo!) }, services: demoServices(topo!.pod2), device: { queues: 2, ioWorkers: true }, snapshotPath: SNAPSHOT });
  }

  async function stopForwarder(): Promise<Stopped> {
    const { stopped, reclaimedFds } = await lab.stop();
    // The worker closes its device before it reports "stopped": no fd may be left to reclaim.
    expect(reclaimedFds).toEqual([]);
    return stopped;
  }

  const waitForFlow = (flow: string, ok: (f: FlowSummary) => boolean) => lab.waitForFlow(flow, ok);

  beforeAll(async () => {
    await lab.open({ masquerade: true }, async () => {
      topo = lab.topo;
      await startForwarder();
    });
  }, 30_000);

  afterAll(() => lab.close(), 30_000);

  it("creates its TUN in this namespace and runs with it moved into the node", () => {
    expect(lab.starts[0]).toMatchObject({ device: TUN, mtu: 1500, restored: {} });
    expect(topo!.tunPresent()).toBe(true);
  });

  it.each([4, 6] as const)("TCP over IPv%i pod1 -> pod2: connect, data, close, all through the forwarder", async (family) => {
    const { pod1, pod2 } = topo!;
    const [src, dst] = family === 4 ? [pod1.v4, pod2.v4] : [pod1.v6, pod2.v6];
    const port = 7000 + family;
    const server = topo!.agent(pod2, ["tcp-server", dst, port]);
    await server.ready();
    const message = `hello pod2 over IPv${family}, through the TUN`;
    const client = topo!.agent(pod1, ["tcp-client", dst, port, message]);
    const [c, s] = await Promise.all([
      client.result<{ reply: string; localPort: number }>(8_000),
      server.result<{ received: string; remoteAddress: string; remotePort: number }>(8_000),
    ]);
    expect(c.reply).toBe(`echo:${message}`);
    expect(s.received).toBe(message);
    expect([s.remoteAddress, s.remotePort]).toEqual([src, c.localPort]);
    const flow = formatTuple({ family, src, dst, sport: c.localPort, dport: port, proto: 6, flags: 0 });
    // SYN, ACK, data, FIN (at least) one way; SYN-ACK, data, FIN back; both FINs seen.
    const f = await waitForFlow(flow, (f) => f.txPackets >= 4 && f.rxPackets >= 3 && f.state.includes("tx-closing") && f.state.includes("rx-closing"));
    expect(f).toMatchObject({ table: `tcp${family}`, proto: "TCP" });
  });

  it.each([4, 6] as const)("UDP over IPv%i pod1 -> ext, with replies", async (family) => {
    const { pod1, ext } = topo!;
    const [src, dst] = family === 4 ? [pod1.v4, ext.v4] : [pod1.v6, ext.v6];
    const port = 7100 + family;
    const server = topo!.agent(ext, ["udp-server", dst, port, ROUNDS]);
    await server.ready();
    const client = topo!.agent(pod1, ["udp-client", dst, port, ROUNDS]);
    const [c, s] = await Promise.all([
      client.result<{ replies: number; localPort: number }>(8_000),
      server.result<{ answered: number; remotePort: number }>(8_000),
    ]);
    expect(c.replies).toBe(ROUNDS);
    expect(s.remotePort).toBe(c.localPort);
    const flow = formatTuple({ family, src, dst, sport: c.localPort, dport: port, proto: 17, flags: 0 });
    const f = await waitForFlow(flow, (f) => f.txPackets >= ROUNDS && f.rxPackets >= ROUNDS);
    expect(f).toMatchObject({ table: `any${family}`, proto: "UDP" });
  });

  it.each([4, 6] as const)("ping over IPv%i pod2 -> ext", async (family) => {
    const { pod2, ext } = topo!;
    const [src, dst] = family === 4 ? [pod2.v4, ext.v4] : [pod2.v6, ext.v6];
    const id = 7200 + family;
    const r = await topo!.agent(pod2, ["ping", dst, id, ROUNDS]).result<{ replies: number }>(10_000);
    expect(r.replies).toBe(ROUNDS);
    const proto = family === 4 ? 1 : 58;
    const flow = formatTuple({ family, src, dst, sport: 0, dport: id, proto, flags: 0 });
    const f = await waitForFlow(flow, (f) => f.txPackets >= ROUNDS && f.rxPackets >= ROUNDS);
    expect(f).toMatchObject({ table: `any${family}`, proto: family === 4 ? "ICMP" : "ICMPv6" });
  });

  it.each([4, 6] as const)("masquerading over IPv%i: TCP, UDP and ping from the pods reach ext from the node's address; the pods get the replies", async (family) => {
    const { pod1, pod2, ext } = topo!;
    const v = (e: typeof pod1) => (family === 4 ? e.v4 : e.v6);
    const node = family === 4 ? ext.gw4 : ext.gw6;
    const port = 7500 + family;
    const tcpServer = topo!.agent(ext, ["tcp-server", v(ext), port]);
    const udpServer = topo!.agent(ext, ["udp-server", v(ext), port, ROUNDS]);
    const watch = topo!.agent(ext, ["icmp-watch", v(ext), 0]);
    await Promise.all([tcpServer, udpServer, watch].map((a) => a.ready()));

    const message = `hello ext over IPv${family}, from behind the node`;
    const [tc, ts] = await Promise.all([
      topo!.agent(pod1, ["tcp-client", v(ext), port, message]).result<{ reply: string; localPort: number }>(8_000),
      tcpServer.result<{ received: string; remoteAddress: string; remotePort: number }>(8_000),
    ]);
    expect(tc.reply).toBe(`echo:${message}`);
    expect(ts.received).toBe(message);
    // The node's address; the pod's port kept (it lies in the NAT range and was free).
    expect([ts.remoteAddress, ts.remotePort]).toEqual([node, tc.localPort]);

    const [uc, us] = await Promise.all([
      topo!.agent(pod1, ["udp-client", v(ext), port, ROUNDS]).result<{ replies: number; localPort: number; from: string }>(8_000),
      udpServer.result<{ answered: number; remoteAddress: string; remotePort: number }>(8_000),
    ]);
    expect(uc).toMatchObject({ replies: ROUNDS, from: v(ext) });
    expect([us.remoteAddress, us.remotePort]).toEqual([node, uc.localPort]);

    // The pod's echo identifier is below the NAT range (from 32768): the node sends it as the
    // first candidate, min + id % range (docs/nat.md), so ext sees that identifier, not the pod's.
    // All ROUNDS replies arriving means both ends' kernels accepted the rewritten ICMP checksums.
    const id = 7600 + family;
    const sentId = translatedEchoId(id);
    const pinged = await topo!.agent(pod2, ["ping", v(ext), id, ROUNDS]).result<{ replies: number }>(10_000);
    expect(pinged.replies).toBe(ROUNDS);
    const seen = await watch.waitLine<{ peer: { proto: string; address: string; port: number } }>("the echo requests' source",
      (l) => (l as { peer?: { proto: string } }).peer?.proto === "icmp", 5_000);
    expect(seen.peer).toEqual({ proto: "icmp", address: node, port: sentId });
    // Nobody but the node, with nothing but the translated identifier: no pod address or identifier reached ext.
    expect(watch.lines.flatMap((l) => ((l as { peer?: ExtPeer }).peer ? [(l as { peer: ExtPeer }).peer] : []))).toEqual([{ proto: "icmp", address: node, port: sentId }]);
    watch.kill();

    // The forwarder's report lists the three mappings, the flows as the pods sent them.
    const bracket = (a: string, p: number) => (family === 6 ? `[${a}]:${p}` : `${a}:${p}`);
    const expected = [
      { proto: "TCP", flow: `${bracket(v(pod1), tc.localPort)} -> ${bracket(v(ext), port)}`, source: bracket(node, tc.localPort) },
      { proto: "UDP", flow: `${bracket(v(pod1), uc.localPort)} -> ${bracket(v(ext), port)}`, source: bracket(node, uc.localPort) },
      { proto: family === 4 ? "ICMP" : "ICMPv6", flow: `${v(pod2)} -> ${v(ext)} id=${id}`, source: `${node} id=${sentId}` },
    ].map((m) => ({ table: `nat${family}`, ...m }));
    const rows = await waitFor("the NAT mappings in the report", () => {
      const nat = latest()?.nat ?? [];
      return expected.every((m) => nat.some((r) => JSON.stringify(r) === JSON.stringify(m))) ? nat : undefined;
    }, { timeoutMs: 5_000, detail: () => JSON.stringify(latest()?.nat) });
    expect(rows.filter((r) => r.table === `nat${family}` && !r.source.includes(node))).toEqual([]);
  });

  it.each([4, 6] as const)("ext has no route back to the pods (IPv%i): only translated traffic can reach them", async (family) => {
    const { pod1, ext } = topo!;
    const r = topo!.agent(ext, ["ping", family === 4 ? pod1.v4 : pod1.v6, 7700 + family, 1]).result(8_000);
    await expect(r).rejects.toThrow(/sendto: errno 101/);
  });

  it.each([4, 6] as const)("TCP and UDP to the service VIP over IPv%i: DNAT to a pod2 backend, answers from the VIP, counted on that backend", async (family) => {
    const { pod1, pod2 } = topo!;
    const [src, backend, vip] = family === 4 ? [pod1.v4, pod2.v4, SERVICE_VIP4] : [pod1.v6, pod2.v6, SERVICE_VIP6];
    const servers = BACKEND_TCP_PORTS.map((port) => topo!.agent(pod2, ["tcp-echo", backend, port]));
    const udpServer = topo!.agent(pod2, ["udp-server", backend, BACKEND_UDP_PORT, ROUNDS]);
    await Promise.all([...servers, udpServer].map((a) => a.ready()));

    const c = await topo!.agent(pod1, ["tcp-stream", vip, SERVICE_TCP_PORT, ROUNDS, 50]).result<{ sent: number; echoed: number; localPort: number }>(8_000);
    expect(c).toMatchObject({ sent: ROUNDS, echoed: ROUNDS });
    // Exactly one backend served the connection, and saw the client's own address and port (no SNAT).
    const served = await waitFor("the backend's connection line", () => {
      const seen = servers.map((srv, i) => ({ port: BACKEND_TCP_PORTS[i], line: srv.lines.find((l) => (l as { connection?: { remotePort: number } }).connection?.remotePort === c.localPort) }));
      const hit = seen.filter((x) => x.line);
      return hit.length ? hit : undefined;
    }, { timeoutMs: 5_000 });
    expect(served).toHaveLength(1);
    expect((served[0].line as { connection: { remoteAddress: string; hadError: boolean } }).connection).toMatchObject({ remoteAddress: src, hadError: false });
    const backendPort = served[0].port;
    // Tracked client -> backend, both ways, closed.
    const flow = formatTuple({ family, src, dst: backend, sport: c.localPort, dport: backendPort, proto: 6, flags: 0 });
    await waitForFlow(flow, (f) => f.txPackets >= 4 && f.rxPackets >= 3 && f.state.includes("tx-closing") && f.state.includes("rx-closing"));

    const u = await topo!.agent(pod1, ["udp-client", vip, SERVICE_UDP_PORT, ROUNDS]).result<{ replies: number; localPort: number; from: string }>(8_000);
    expect(u).toMatchObject({ replies: ROUNDS, from: vip });
    const us = await udpServer.result<{ answered: number; remotePort: number }>(8_000);
    expect(us.remotePort).toBe(u.localPort);
    await waitForFlow(formatTuple({ family, src, dst: backend, sport: u.localPort, dport: BACKEND_UDP_PORT, proto: 17, flags: 0 }), (f) => f.txPackets >= ROUNDS && f.rxPackets >= ROUNDS);

    // The report's per-backend view names the backend that answered.
    const bracket = (a: string) => (family === 6 ? `[${a}]` : a);
    const row = await waitFor("the service rows", () => {
      const rows = latest()?.services.filter((r) => r.frontend.startsWith(`${bracket(vip)}:`));
      const tcp = rows?.find((r) => r.backend === `${bracket(backend)}:${backendPort}` && r.flows >= 1 && r.rxPackets >= 3);
      const udp = rows?.find((r) => r.backend === `${bracket(backend)}:${BACKEND_UDP_PORT}` && r.flows >= 1 && r.rxPackets >= ROUNDS);
      return tcp && udp ? rows : undefined;
    }, { timeoutMs: 5_000, detail: () => JSON.stringify(latest()?.services) });
    expect(row.map((r) => r.frontend).sort()).toEqual([
      `${bracket(vip)}:${SERVICE_UDP_PORT}/udp`, `${bracket(vip)}:${SERVICE_TCP_PORT}/tcp`, `${bracket(vip)}:${SERVICE_TCP_PORT}/tcp`,
    ]);
    for (const srv of servers) srv.kill();
  });

  it("counted every packet it read, passed them all, and dropped nothing", async () => {
    // Read once the last flow's packets are in: a report after everything above.
    const r = await lab.reportAfterNow();
    // Per flow above: TCP >= 7 packets, UDP and ping >= 6 (both families each).
    expect(r.stats.packetsIn).toBeGreaterThanOrEqual(2 * (7 + 6 + 6));
    expect(r.stats.packetsOut).toBe(r.stats.packetsIn);
    expect(r.stats.dropped).toBe(0);
    expect(r.counters.drops).toEqual([]);
    const forwarded = r.counters.forwarded.egress.packets + r.counters.forwarded.ingress.packets;
    // Link plumbing the node sends into the device (IPv6 multicast listener reports) passes untracked, uncounted.
    expect(forwarded).toBeGreaterThanOrEqual(2 * (7 + 6 + 6));
    expect(forwarded).toBeLessThanOrEqual(r.stats.packetsIn);
    expect(r.entries).toBeGreaterThanOrEqual(6);
  });

  it("stopping the forwarder cuts the endpoints off; a new one reconnects them", async () => {
    const { pod2, ext } = topo!;
    const stopped = await stopForwarder();
    expect(stopped.snapshotEntries).toBeGreaterThanOrEqual(6);
    expect(existsSync(SNAPSHOT)).toBe(true);
    // No TUN: table 100 has only the unreachable route left.
    const fails = await Promise.allSettled([
      topo!.agent(pod2, ["ping", ext.v4, 7301, 1]).result(10_000),
      topo!.agent(pod2, ["ping", ext.v6, 7302, 1]).result(10_000),
    ]);
    for (const f of fails) {
      expect(f.status).toBe("rejected");
      expect(String((f as PromiseRejectedResult).reason)).toMatch(/no reply to seq 1/);
    }
    await startForwarder();
    const back = await topo!.agent(pod2, ["ping", ext.v4, 7303, 1]).result<{ replies: number }>(10_000);
    expect(back.replies).toBe(1);
    await waitForFlow(formatTuple({ family: 4, src: pod2.v4, dst: ext.v4, sport: 0, dport: 7303, proto: 1, flags: 0 }), (f) => f.rxPackets >= 1);
  }, 30_000);

  it("a restart with the snapshot keeps an established TCP connection: no reset, echoes continue, the entry carries on", async () => {
    const { pod1, pod2 } = topo!;
    const port = 7400;
    const lines = 40;
    const server = topo!.agent(pod2, ["tcp-echo", pod2.v4, port], { limitMs: 60_000 });
    await server.ready();
    const client = topo!.agent(pod1, ["tcp-stream", pod2.v4, port, lines, 200], { limitMs: 60_000 });
    const { localPort } = await client.waitLine<{ localPort: number }>("connected", (l) => (l as { connected?: boolean }).connected === true);
    const echoes = () => client.lines.filter((l) => typeof (l as { echo?: number }).echo === "number").length;
    await client.waitLine("10 echoes", (l) => (l as { echo?: number }).echo === 10, 8_000);
    const flow = formatTuple({ family: 4, src: pod1.v4, dst: pod2.v4, sport: localPort, dport: port, proto: 6, flags: 0 });

    const stopped = await stopForwarder();
    const echoesAtStop = echoes();
    expect(stopped.snapshotEntries).toBeGreaterThan(0);
    // The connection as the snapshot holds it.
    const reader = await Datapath.create(OPTIONS);
    restoreSnapshot(reader, readFileSync(SNAPSHOT));
    const saved = [...reader.conntrack("tcp4")].filter((r) => formatTuple(r.tuple) === flow);
    expect(saved).toHaveLength(1);
    const atSnapshot = { tx: Number(saved[0]!.entry.txPackets), rx: Number(saved[0]!.entry.rxPackets) };
    // Ten round trips: a line and an echo each, plus the handshake and acknowledgements.
    expect(atSnapshot.tx).toBeGreaterThanOrEqual(11);
    expect(atSnapshot.rx).toBeGreaterThanOrEqual(11);

    const handle = await startForwarder();
    const restored = Object.values(handle.ready.restored).reduce((s, n) => s + n, 0);
    expect(restored).toBe(stopped.snapshotEntries);
    expect(handle.ready.restored.tcp4).toBeGreaterThanOrEqual(1);

    // Echoes resume; the client has seen neither a reset nor a close (it would have exited).
    await client.waitLine(`echo ${echoesAtStop + 3}`, (l) => (l as { echo?: number }).echo === echoesAtStop + 3, 15_000);
    expect(client.running).toBe(true);
    // The entry is the restored one, counting on from the snapshot: more packets than were in the snapshot,
    // and the new datapath created no TCP entry at all.
    const after = await waitForFlow(flow, (f) => f.txPackets > atSnapshot.tx && f.rxPackets > atSnapshot.rx);
    expect(after.table).toBe("tcp4");
    expect(after.state).not.toMatch(/closing/);
    expect(latest()!.counters.tables.tcp4.created).toBe(0n);

    // Every line is echoed, in order, and the connection closes cleanly at the end.
    const done = await client.result<{ sent: number; echoed: number }>(30_000);
    expect(done).toEqual({ sent: lines, echoed: lines, localPort });
    const closed = await server.waitLine<{ connection: { remotePort: number; bytes: number; hadError: boolean } }>(
      "the connection's end", (l) => (l as { connection?: { remotePort: number } }).connection?.remotePort === localPort,
    );
    expect(closed.connection.hadError).toBe(false);
    expect(closed.connection.bytes).toBe(Array.from({ length: lines }, (_, i) => `${i + 1}\n`).join("").length);
    await waitForFlow(flow, (f) => f.state.includes("tx-closing") && f.state.includes("rx-closing"));
    expect(latest()!.counters.tables.tcp4.created).toBe(0n);
  }, 60_000);

  it("removes the namespaces, veths, TUN, agents and snapshot", async () => {
    expect(await lab.teardown()).toEqual([]);
    expect(lab.leftovers()).toEqual([]);
  }, 30_000);
});


describeIf("membrane demo (runDemo)", demoUnavailable(), () => {
  const prefix = `mbrd${process.pid}`;

  afterAll(async () => {
    // Removes something only when the demo failed to clean up after itself.
    const left = await sweep(prefix);
    if (left.length) throw new Error(`the demo left: ${left.join(", ")}`);
  }, 30_000);

  it("builds the topology, forwards TCP, UDP and ping over both families and to the service VIPs, reports, and removes everything", async () => {
    const out: string[] = [];
    const err: string[] = [];
    const result = await runDemo({ out: (l) => out.push(l), err: (l) => err.push(l) }, { seconds: 3, json: true, prefix });
    expect(err).toEqual([]);
    expect(result.ran).toBe(true);
    const lines = out.map((l) => JSON.parse(l) as { type: string } & Record<string, unknown>);
    expect(lines[0]).toMatchObject({ type: "topology", node: `${prefix}-node`, tun: `${prefix}-tun` });
    const reports = lines.filter((l) => l.type === "report") as unknown as Array<{ t: number; flows: FlowSummary[]; stats: { packetsIn: number } }>;
    // How many one-second frames fit depends on the machine's load; that there are frames does not.
    expect(reports.length).toBeGreaterThanOrEqual(1);
    const flows = reports.flatMap((r) => r.flows);
    for (const [table, proto] of [["tcp4", "TCP"], ["tcp6", "TCP"], ["any4", "UDP"], ["any6", "UDP"], ["any4", "ICMP"], ["any6", "ICMPv6"]]) {
      expect(flows.some((f) => f.table === table && f.proto === proto && f.txPackets > 0 && f.rxPackets > 0), `${table} ${proto}`).toBe(true);
    }
    const summary = lines.at(-1) as unknown as DemoSummary & { type: string };
    expect(summary.type).toBe("summary");
    expect(summary.interrupted).toBe(false);
    expect(summary.traffic.filter((t) => t.result !== "ok")).toEqual([]);
    expect(summary.traffic).toHaveLength(13);
    expect(summary.traffic.map((t) => t.what)).toEqual(expect.arrayContaining([
      `TCP stream IPv4 pod1 -> service ${SERVICE_VIP4}:${SERVICE_TCP_PORT}`, `UDP IPv6 pod1 -> service [${SERVICE_VIP6}]:${SERVICE_UDP_PORT}`,
    ]));
    // Which backend answered: every service has a backend with flows and answers counted.
    for (const frontend of [`${SERVICE_VIP4}:${SERVICE_TCP_PORT}/tcp`, `${SERVICE_VIP4}:${SERVICE_UDP_PORT}/udp`, `[${SERVICE_VIP6}]:${SERVICE_TCP_PORT}/tcp`, `[${SERVICE_VIP6}]:${SERVICE_UDP_PORT}/udp`]) {
      expect(summary.services.some((r) => r.frontend === frontend && r.flows > 0 && r.rxPackets > 0), frontend).toBe(true);
    }
    // Masquerading: ext saw the node's addresses for TCP, UDP and ping in both families, and no one else.
    const node = [summary.masquerade.addresses[0], summary.masquerade.addresses[1]];
    expect(node).toEqual(["10.200.9.1", "fd00:200:9::1"]);
    for (const proto of ["tcp", "udp", "icmp"]) {
      expect(summary.masquerade.seenByExt.filter((p) => p.proto === proto).map((p) => p.address).sort(), proto).toEqual(expect.arrayContaining(node));
    }
    expect(summary.masquerade.seenByExt.filter((p) => !node.includes(p.address))).toEqual([]);
    for (const [table, proto] of [["nat4", "TCP"], ["nat4", "UDP"], ["nat4", "ICMP"], ["nat6", "TCP"], ["nat6", "UDP"], ["nat6", "ICMPv6"]]) {
      expect(summary.masquerade.nat.some((m) => m.table === table && m.proto === proto), `${table} ${proto}`).toBe(true);
    }
    expect(summary.masquerade.natMappings).toBeGreaterThanOrEqual(6);
    expect(summary.stats!.packetsIn).toBeGreaterThan(0);
    expect(summary.stats!.dropped).toBe(0);
    expect(summary.cleanup).toEqual([]);
    expect(netnsList().filter((ns) => ns.startsWith(`${prefix}-`))).toEqual([]);
    expect(linkNames().filter((l) => l.startsWith(`${prefix}-`))).toEqual([]);
  }, 30_000);
});
