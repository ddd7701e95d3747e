// A forwarder over several TUN queues (MultiQueueTun over in-memory devices):
// one datapath decides every queue's packets, so a flow whose directions
// arrive on different queues is one conntrack entry, a masqueraded flow's
// reply on another queue is translated back, and each packet leaves on the
// queue it came from; each with read()/write() and with descriptor batches
// (one native call per queue, nothing per packet in JavaScript).
import { describe, expect, test } from "vitest";
import { Datapath } from "../../host/datapath.js";
import { FakeTun } from "../../host/tun/fake-tun.js";
import { MultiQueueTun } from "../../host/tun/multi-queue.js";
import { Forwarder } from "../../host/forwarder/forwarder.js";
import { packet4 } from "../../host/packet/build.js";
import { decodePacket } from "../../host/packet/decode.js";

const POD = "10.0.1.2";
const SERVER = "10.0.2.2";
const NODE = "192.168.0.10";
const EXT = "198.51.100.7";

async function setup(nat = false, descriptorIo = false) {
  const dp = await Datapath.create({
    conntrack: { tcpEntries: 1024, otherEntries: 1024 },
    ...(nat ? { nat: { ipv4: { address: NODE, clusterCidrs: ["10.0.0.0/16"] }, seed: 1 } } : {}),
  });
  const queues = [new FakeTun({ mtu: 1500, descriptorIo }), new FakeTun({ mtu: 1500, descriptorIo })];
  const dev = new MultiQueueTun(queues);
  expect(dev.descriptorIo() !== undefined).toBe(descriptorIo);
  return { dp, queues, dev, fwd: new Forwarder(dp, dev, { batchSize: 8, clock: () => 1000 }) };
}

describe.each([["read()/write()", false], ["descriptor batches", true]])("forwarder over two queues, %s", (_, descriptors) => {
  test("both directions of a TCP flow, on different queues, are one conntrack entry", async () => {
    const { dp, queues, fwd } = await setup(false, descriptors);
    queues[0]!.inject(packet4({ src: POD, dst: SERVER }).tcp({ sport: 40000, dport: 80, flags: { syn: true } }));
    fwd.step();
    queues[1]!.inject(packet4({ src: SERVER, dst: POD }).tcp({ sport: 80, dport: 40000, flags: { syn: true, ack: true } }));
    fwd.step();
    queues[0]!.inject(packet4({ src: POD, dst: SERVER }).tcp({ sport: 40000, dport: 80, flags: { ack: true } }));
    fwd.step();
    const entries = [...dp.conntrack("tcp4")];
    expect(entries).toHaveLength(1);
    expect(entries[0]!.entry).toMatchObject({ txPackets: 2n, rxPackets: 1n });
    expect(fwd.stats).toMatchObject({ packetsIn: 3, packetsOut: 3, dropped: 0 });
    // Each packet went back out on the queue it was read from.
    expect(queues[0]!.drainWritten()).toHaveLength(2);
    expect(queues[1]!.drainWritten()).toHaveLength(1);
  });

  test("a masqueraded flow's reply arriving on the other queue is translated back to the pod", async () => {
    const { queues, fwd } = await setup(true, descriptors);
    queues[0]!.inject(packet4({ src: POD, dst: EXT }).udp({ sport: 5000, dport: 53 }));
    fwd.step();
    const [out] = queues[0]!.drainWritten();
    const sent = decodePacket(out!.packet, "ip");
    expect(sent.src).toBe(NODE);
    const port = sent.sport!;
    queues[1]!.inject(packet4({ src: EXT, dst: NODE }).udp({ sport: 53, dport: port }));
    fwd.step();
    const [back] = queues[1]!.drainWritten();
    const reply = decodePacket(back!.packet, "ip");
    expect(reply.dst).toBe(POD);
    expect(reply.dport).toBe(5000);
  });

  test("reads every queue into one batch, the first queue read rotating", async () => {
    const { queues, fwd } = await setup(false, descriptors);
    for (let i = 0; i < 6; i++) queues[i % 2]!.inject(packet4({ src: POD, dst: SERVER }).udp({ sport: 6000 + i, dport: 53 }));
    expect(fwd.step()).toBe(6);
    expect(queues.map((q) => q.drainWritten().length)).toEqual([3, 3]);
    for (let i = 0; i < 12; i++) queues[0]!.inject(packet4({ src: POD, dst: SERVER }).udp({ sport: 7000 + i, dport: 53 }));
    for (let i = 0; i < 12; i++) queues[1]!.inject(packet4({ src: POD, dst: SERVER }).udp({ sport: 8000 + i, dport: 53 }));
    // A full batch from whichever queue is read first, then the other gets its turn first.
    expect(fwd.step()).toBe(8);
    expect(fwd.step()).toBe(8);
    expect(queues.map((q) => q.drainWritten().length).sort()).toEqual([8, 8]);
  });
});

describe("descriptor batches over two queues: a queue that fails a write", () => {
  /** 3 packets on each queue, all passing; queue 0 is read first, so records 0-2 are its run, 3-5 queue 1's. */
  async function sixPackets() {
    const r = await setup(false, true);
    for (let i = 0; i < 6; i++) r.queues[i % 2]!.inject(packet4({ src: POD, dst: SERVER }).udp({ sport: 6000 + i, dport: 53 }));
    return r;
  }

  test("EAGAIN on the second queue: the first queue's run went out, the rest counted as write errors", async () => {
    const { queues, fwd } = await sixPackets();
    queues[1]!.failWrite(1, "EAGAIN");
    expect(fwd.step()).toBe(6);
    expect(queues.map((q) => q.drainWritten().length)).toEqual([3, 1]);
    expect(fwd.stats).toMatchObject({ packetsIn: 6, packetsOut: 6, writes: 4, writeErrors: 2, dropped: 0 });
  });

  test("EINVAL on the first queue: that packet is skipped, the rest of both queues written", async () => {
    const { queues, fwd } = await sixPackets();
    queues[0]!.failWrite(1, "EINVAL");
    expect(fwd.step()).toBe(6);
    expect(queues.map((q) => q.drainWritten().length)).toEqual([2, 3]);
    expect(fwd.stats).toMatchObject({ packetsIn: 6, packetsOut: 6, writes: 5, writeErrors: 1, dropped: 0 });
  });

  test("EAGAIN on the first queue: the untried second queue's packets count as write errors too", async () => {
    const { queues, fwd } = await sixPackets();
    queues[0]!.failWrite(0, "EAGAIN");
    expect(fwd.step()).toBe(6);
    expect(queues.map((q) => q.drainWritten().length)).toEqual([0, 0]);
    expect(fwd.stats).toMatchObject({ packetsIn: 6, packetsOut: 6, writes: 0, writeErrors: 6, dropped: 0 });
  });

  test("EAGAIN on the first queue: of the untried queue's packets only those that passed count as write errors", async () => {
    const { queues, fwd } = await sixPackets();
    // Not an IP packet: the datapath drops it, so it is neither written nor a write error.
    queues[1]!.inject(new Uint8Array(20));
    queues[0]!.failWrite(0, "EAGAIN");
    expect(fwd.step()).toBe(7);
    expect(queues.map((q) => q.drainWritten().length)).toEqual([0, 0]);
    expect(fwd.stats).toMatchObject({ packetsIn: 7, packetsOut: 6, writes: 0, writeErrors: 6, dropped: 1 });
  });
});
