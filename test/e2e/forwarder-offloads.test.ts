/**
 * End to end with TUN offloads: the forwarder's TUN carries a virtio-net
 * header with TSO/USO/checksum offloads, so the kernel hands it TCP
 * super-packets of up to 64 KiB with partial checksums. In passthrough mode
 * (the default) each is decided once and written back with its header for
 * the kernel to segment; in split mode it is segmented in JS and coalesced
 * again. Bulk TCP over both families must arrive byte for byte (the sink's
 * SHA-256 equals the sender's), and UDP and ping work alongside.
 *
 * Topology as in forwarder.test.ts (host/demo/topology.ts), namespaces mbro<pid>-*.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import type { OffloadMode } from "../../host/forwarder/forwarder.js";
import { formatTuple } from "../../host/conntrack/records.js";
import type { ForwarderTopology } from "../../host/demo/topology.js";
import { demoUnavailable } from "../../host/demo/requirements.js";
import { describeIf } from "../support/describe-if.js";
import { ForwarderLab } from "./forwarder-lab.js";

const PREFIX = `mbro${process.pid}`;
const BULK_BYTES = 16 * 1024 * 1024;

describeIf("the TUN forwarder with offloads", demoUnavailable(), () => {
  const lab = new ForwarderLab(PREFIX);
  let topo: ForwarderTopology | undefined;
  let port = 7600;
  const latest = () => lab.latest();

  async function start(offloadMode: OffloadMode): Promise<void> {
    await lab.start({ options: { conntrack: { tcpEntries: 4096, otherEntries: 4096 } }, device: { offloads: true, offloadMode } });
  }

  /** Bulk TCP pod1 -> pod2; returns the flow as the forwarder's report shows it once the connection closed. */
  async function bulk(family: 4 | 6) {
    const { pod1, pod2 } = topo!;
    const dst = family === 4 ? pod2.v4 : pod2.v6;
    const p = port++;
    const sink = topo!.agent(pod2, ["tcp-sink", dst, p], { limitMs: 30_000 });
    await sink.ready();
    const sender = topo!.agent(pod1, ["tcp-bulk", dst, p, BULK_BYTES], { limitMs: 30_000 });
    const [s, r] = await Promise.all([
      sender.result<{ sent: number; sha256: string; localPort: number }>(30_000),
      sink.result<{ received: number; sha256: string }>(30_000),
    ]);
    expect(r).toEqual({ received: BULK_BYTES, sha256: s.sha256 });
    const flow = formatTuple({ family, src: family === 4 ? pod1.v4 : pod1.v6, dst, sport: s.localPort, dport: p, proto: 6, flags: 0 });
    return lab.waitForFlow(flow, (f) => f.state.includes("tx-closing") && f.state.includes("rx-closing"));
  }

  beforeAll(async () => {
    await lab.open({}, async () => {
      topo = lab.topo;
      await start("passthrough");
    });
  }, 30_000);

  afterAll(() => lab.close(), 30_000);

  it.each([4, 6] as const)("passthrough: 16 MiB of TCP over IPv%i arrive intact, as super-packets decided once each", async (family) => {
    const before = latest()?.stats;
    const f = await bulk(family);
    const st = (await lab.reportAfterNow()).stats;
    const read = st.packetsIn - (before?.packetsIn ?? 0);
    const wire = st.wirePacketsIn - (before?.wirePacketsIn ?? 0);
    // 16 MiB is at least 11,000 MTU-sized segments; super-packets carried them in far fewer reads.
    expect(wire).toBeGreaterThan(BULK_BYTES / 1500);
    expect(read).toBeLessThan(wire / 2);
    // Conntrack counted what it decided: one per super-packet, not per wire segment.
    expect(f.txPackets).toBeLessThan(BULK_BYTES / 1500);
    expect(st).toMatchObject({ dropped: 0, offloadUnwritable: 0, writeErrors: 0 });
  }, 40_000);

  it.each([4, 6] as const)("passthrough: UDP and ping over IPv%i with the checksum left partial", async (family) => {
    const { pod1, ext } = topo!;
    const dst = family === 4 ? ext.v4 : ext.v6;
    const p = port++;
    const server = topo!.agent(ext, ["udp-server", dst, p, 3]);
    await server.ready();
    const c = await topo!.agent(pod1, ["udp-client", dst, p, 3]).result<{ replies: number }>(8_000);
    expect(c.replies).toBe(3);
    const r = await topo!.agent(pod1, ["ping", dst, 7700 + family, 2]).result<{ replies: number }>(10_000);
    expect(r.replies).toBe(2);
  });

  it("passthrough: a stream of small UDP datagrams arrives whole and in order, merged into USO super-packets on write", async () => {
    const { pod1, pod2 } = topo!;
    const p = port++;
    const COUNT = 4096;
    const before = (await lab.reportAfterNow()).stats;
    const sink = topo!.agent(pod2, ["udp-collect", pod2.v4, p, COUNT], { limitMs: 30_000 });
    await sink.ready();
    // Bursts of 64 back to back, as one sendmmsg would: the forwarder reads several per batch.
    const sent = await topo!.agent(pod1, ["udp-burst", pod2.v4, p, COUNT, 64], { limitMs: 30_000 }).result<{ sent: number }>(30_000);
    const got = await sink.result<{ received: number; inOrder: boolean; firstGap: number | null }>(30_000);
    expect(sent.sent).toBe(COUNT);
    expect(got).toEqual({ received: COUNT, inOrder: true, firstGap: null });
    const st = (await lab.reportAfterNow()).stats;
    const coalescedWrites = st.coalescedWrites! - before.coalescedWrites!;
    const coalescedPackets = st.coalescedPackets! - before.coalescedPackets!;
    const writes = st.writes - before.writes;
    const out = st.packetsOut - before.packetsOut;
    // The datagrams left in fewer writes than there were datagrams: runs of them went out as one write each.
    expect(coalescedWrites).toBeGreaterThan(0);
    expect(coalescedPackets).toBeGreaterThan(coalescedWrites);
    expect(out).toBeGreaterThanOrEqual(COUNT);
    expect(writes).toBeLessThan(out);
    expect(st).toMatchObject({ dropped: 0, offloadUnwritable: 0, writeErrors: 0 });
  }, 40_000);

  it("split mode: 16 MiB of TCP arrive intact, segmented in JS and coalesced on the way out", async () => {
    await lab.stop();
    await start("split");
    await bulk(4);
    const st = (await lab.reportAfterNow()).stats;
    expect(st.packetsIn).toBe(st.wirePacketsIn);
    expect(st.packetsIn).toBeGreaterThan(BULK_BYTES / 1500);
    // Coalescing: fewer writes than segments.
    expect(st.writes).toBeLessThan(st.packetsOut / 2);
    expect(st).toMatchObject({ dropped: 0, writeErrors: 0 });
  }, 40_000);
});
