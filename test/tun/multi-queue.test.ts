// A TUN device with several queues (IFF_MULTI_QUEUE, openTunQueues) in a
// scratch namespace: the kernel spreads flows over the queues, keeps each flow
// on one queue, and steers a flow to the queue a packet of it was last written
// on. That last rule is what lets a forwarder worker per queue see both
// directions of a flow, NAT included (docs/forwarder.md, "More than one queue").
import { afterAll, beforeAll, expect, it } from "vitest";
import { InvalidInputError } from "../../host/errors.js";
import { openTunQueues, type LinuxTun } from "../../host/tun/linux-tun.js";
import { packet4 } from "../../host/packet/build.js";
import { describeIf, missingTun, scratchNetns } from "./env.js";
import { ip, netnsExists, withNetns } from "../../host/sys/netns/index.js";
import { waitFor } from "../support/wait-for.js";
import { UdpSocket } from "./udp-socket.js";

const LOCAL = "10.252.0.1";
const PEER = "10.252.0.2";
const PEER_PORT = 53;
const FLOWS = 32;
const OFFSET = 16;

it("refuses a queue count outside 1..256 before opening anything", () => {
  expect(() => openTunQueues({ name: "fpq%d" }, 0)).toThrow(InvalidInputError);
  expect(() => openTunQueues({ name: "fpq%d" }, 1.5)).toThrow(/1\.\.256/);
});

describeIf("a multi-queue TUN in a scratch namespace", missingTun(), () => {
  const ns = `fp-mq-${process.pid}`;
  let queues: LinuxTun[] = [];
  const socks: UdpSocket[] = [];

  beforeAll(() => {
    scratchNetns(ns);
    queues = withNetns(ns, () => openTunQueues({ name: "fpmq%d" }, 2));
    ip("-n", ns, "addr", "add", `${LOCAL}/24`, "dev", queues[0]!.name);
    for (let i = 0; i < FLOWS; i++) socks.push(withNetns(ns, () => UdpSocket.bind(LOCAL, 41000 + i)));
  });

  afterAll(() => {
    for (const s of socks) s.close();
    for (const q of queues) q.close();
    if (netnsExists(ns)) ip("netns", "del", ns);
    expect(netnsExists(ns)).toBe(false);
  });

  /** Every packet waiting on each queue, as the source port of the datagram it carries. */
  function drain(): number[][] {
    return queues.map((q) => {
      const ports: number[] = [];
      const bufs = Array.from({ length: 64 }, () => new Uint8Array(OFFSET + q.readCapacity));
      const sizes = new Array<number>(64).fill(0);
      for (let n = q.read(bufs, sizes, OFFSET); n > 0; n = q.read(bufs, sizes, OFFSET)) {
        for (let i = 0; i < n; i++) ports.push((bufs[i]![OFFSET + 20]! << 8) | bufs[i]![OFFSET + 21]!);
      }
      return ports;
    });
  }

  /** Sends one datagram per socket and collects them from the queues until all arrived. */
  async function sendAll(): Promise<number[][]> {
    const got: number[][] = queues.map(() => []);
    for (const s of socks) s.sendTo(PEER, PEER_PORT, new TextEncoder().encode("q"));
    await waitFor(`${FLOWS} datagrams on the queues`, () => {
      drain().forEach((ports, q) => got[q]!.push(...ports));
      return got.flat().length >= FLOWS;
    }, { timeoutMs: 5000, detail: () => `got ${got.map((q) => q.length).join(" + ")}` });
    return got;
  }

  it("is one interface with two queues, and the kernel spreads flows over both, each flow on one", async () => {
    expect(queues).toHaveLength(2);
    expect(queues[1]!.name).toBe(queues[0]!.name);
    const first = await sendAll();
    expect(first.flat().sort()).toEqual(socks.map((_, i) => 41000 + i));
    // 32 flows over 2 queues by flow hash: all on one queue has odds 2^-31.
    expect(first[0]!.length).toBeGreaterThan(0);
    expect(first[1]!.length).toBeGreaterThan(0);
    const again = await sendAll();
    expect(again.map((q) => [...q].sort())).toEqual(first.map((q) => [...q].sort()));
  });

  it("steers a flow to the queue a packet of it was last written on (what a reply follows)", async () => {
    const before = await sendAll();
    // Each flow's reply (peer -> local) is written on the *other* queue than the one its packets came on.
    before.forEach((ports, q) => {
      const other = queues[1 - q]!;
      for (const port of ports) {
        const reply = packet4({ src: PEER, dst: LOCAL }).udp({ sport: PEER_PORT, dport: port, payload: new TextEncoder().encode("r") });
        const buf = new Uint8Array(OFFSET + reply.length);
        buf.set(reply, OFFSET);
        expect(other.write([buf], [reply.length], OFFSET)).toBe(1);
      }
    });
    for (const s of socks) expect(s.recv(5000)).toBeDefined();
    const after = await sendAll();
    // Every flow moved: its packets now arrive where its reply was written.
    expect(after.map((q) => [...q].sort())).toEqual([before[1]!, before[0]!].map((q) => [...q].sort()));
  });
});
