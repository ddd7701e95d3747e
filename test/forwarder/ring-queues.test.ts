// The forwarder over a real two-queue TUN with an I/O thread per queue
// (host/tun/ring-tun.ts) in a scratch namespace: traffic of many flows is
// read on both queues and forwarded by the one deciding thread, and a flow
// whose two directions arrive on different queues is one conntrack entry
// (the reply counted against the entry the first packet created).
//
// Packets are sent with a raw socket (IPPROTO_RAW: the test writes the IP
// header) between two addresses that are both routed into the TUN, so both
// directions of a flow come out of the kernel on the TUN's queues. The kernel
// puts a flow on the queue a packet of it was last written on (test/tun/
// multi-queue.test.ts shows it), which is how the test moves the reply to
// the other queue.
import { afterAll, beforeAll, expect, test } from "vitest";
import { endianness } from "node:os";
import { Datapath } from "../../host/datapath.js";
import { Forwarder } from "../../host/forwarder/forwarder.js";
import { openTunQueues, type LinuxTun } from "../../host/tun/linux-tun.js";
import { RingTun } from "../../host/tun/ring-tun.js";
import { packet4 } from "../../host/packet/build.js";
import { libc, libcLibrary } from "../../host/sys/libc.js";
import { libcTun } from "../../host/tun/libc-tun.js";
import { AF_INET, SOCK_CLOEXEC } from "../../host/tun/tun-abi.js";
import { ip, netnsExists, withNetns } from "../../host/sys/netns/index.js";
import { describeIf, missingTun, scratchNetns } from "../tun/env.js";
import { waitFor } from "../support/wait-for.js";

const NS = `f18-rq-${process.pid}`;
const POD = "10.218.1.2";
const SERVER = "10.218.2.2";
const SOCK_RAW = 3;
const IPPROTO_RAW = 255;
const LE = endianness() === "LE";
const FLOWS = 32;

/** A raw IPv4 socket in the calling thread's namespace: sends whole IP packets, any source address. */
function rawSocket(): { send(pkt: Uint8Array): void; close(): void } {
  const c = libcTun();
  const fd = c.socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
  if (fd < 0) throw new Error(`raw socket: errno ${c.errno()}`);
  const sendto = libcLibrary().func("sendto", "long", ["int", "void *", "size_t", "int", "void *", "uint32_t"]);
  return {
    send(pkt) {
      const sa = new Uint8Array(16);
      new DataView(sa.buffer).setUint16(0, AF_INET, LE);
      sa.set(pkt.subarray(16, 20), 4);
      const n = sendto(fd, pkt, pkt.length, 0, sa, 16) as number;
      if (n !== pkt.length) throw new Error(`raw sendto: ${n}, errno ${c.errno()}`);
    },
    close: () => void libc().close(fd),
  };
}

const udp = (src: string, dst: string, sport: number, dport: number) =>
  packet4({ src, dst }).udp({ sport, dport, payload: new TextEncoder().encode("f18") });

describeIf("the forwarder on two TUN queues with an I/O thread each", missingTun(), () => {
  let dp: Datapath;
  let dev: RingTun;
  let queues: LinuxTun[] = [];
  let fwd: Forwarder;
  let raw: ReturnType<typeof rawSocket>;

  beforeAll(async () => {
    scratchNetns(NS);
    queues = withNetns(NS, () => openTunQueues({ name: "f18rq%d" }, 2));
    ip("-n", NS, "route", "add", "10.218.0.0/16", "dev", queues[0]!.name);
    raw = withNetns(NS, rawSocket);
    dev = new RingTun(queues);
    dp = await Datapath.create({ conntrack: { tcpEntries: 1024, otherEntries: 1024 } });
    fwd = new Forwarder(dp, dev, { batchSize: 32 });
  });

  afterAll(() => {
    raw?.close();
    dev?.close();
    if (netnsExists(NS)) ip("netns", "del", NS);
    expect(netnsExists(NS)).toBe(false);
  });

  /** Steps the forwarder until `done`, so the test's one thread both decides and waits. */
  const forwardUntil = (what: string, done: () => boolean) =>
    waitFor(what, () => {
      while (fwd.step() > 0);
      return done();
    }, { timeoutMs: 10_000, intervalMs: 5, detail: () => `stats ${JSON.stringify(fwd.stats)}, per queue ${dev.queueReads()}` });

  test("forwards the packets of many flows, read on both queues, and loses none", async () => {
    const before = fwd.stats.packetsOut;
    for (let i = 0; i < FLOWS; i++) raw.send(udp(POD, SERVER, 30000 + i, 53));
    await forwardUntil(`${FLOWS} packets forwarded`, () => fwd.stats.packetsOut - before >= FLOWS);
    // 32 flows hashed over 2 queues: all on one has odds 2^-31.
    expect(dev.queueReads().every((n) => n > 0)).toBe(true);
    expect(fwd.stats).toMatchObject({ packetsIn: FLOWS, packetsOut: FLOWS, dropped: 0, writeErrors: 0, ringDrops: 0 });
    expect([...dp.conntrack("any4")]).toHaveLength(FLOWS);
    // Opened with io "auto": each I/O thread tunes its own mode and the decider's thread can read what it found.
    expect(dev.io).toBe("adaptive");
    expect(dev.ioTuning().map((t) => ["uring", "batch"].includes(t.mode))).toEqual([true, true]);
  });

  test("a flow whose two directions arrive on different queues is decided against one conntrack entry", async () => {
    const sport = 31000;
    const reads = () => dev.queueReads();
    let last = reads();
    const arrivedOn = () => {
      const now = reads();
      const q = now.findIndex((n, i) => n > last[i]!);
      last = now;
      return q;
    };
    raw.send(udp(POD, SERVER, sport, 53));
    await forwardUntil("the first packet forwarded", () => fwd.stats.packetsOut === FLOWS + 1);
    const first = arrivedOn();
    expect(first).toBeGreaterThanOrEqual(0);
    // Write a packet of the flow on the other queue's fd: the kernel now puts the flow there.
    const other = 1 - first;
    const steer = udp(SERVER, POD, 53, sport);
    const buf = new Uint8Array(16 + steer.length);
    buf.set(steer, 16);
    expect(queues[other]!.write([buf], [steer.length], 16)).toBe(1);
    raw.send(udp(SERVER, POD, 53, sport));
    await forwardUntil("the reply forwarded", () => fwd.stats.packetsOut === FLOWS + 2);
    expect(arrivedOn()).toBe(other);
    const entries = [...dp.conntrack("any4")].filter((r) => r.tuple.sport === sport || r.tuple.dport === sport);
    expect(entries).toHaveLength(1);
    expect(entries[0]!.entry).toMatchObject({ txPackets: 1n, rxPackets: 1n });
    expect(dp.counters().tables.any4.created).toBe(BigInt(FLOWS + 1));
  });
});
