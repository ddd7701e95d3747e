/**
 * The agent core driving a real forwarder through its command channel
 * (client -> MessageChannel -> inbox -> applier, between batches), on the
 * in-memory TUN device: kvstore records become verdicts on packets, a policy
 * record changed in the store flips the verdict for new flows while the
 * established flow passes on its conntrack entry, and a service's backend
 * added to a service takes new flows only. No restart anywhere.
 */
import { MessageChannel } from "node:worker_threads";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ClusterAgentCore } from "../../host/cluster/agent-core.js";
import { ForwarderSink } from "../../host/cluster/forwarder-sink.js";
import { Datapath } from "../../host/datapath.js";
import { CommandApplier } from "../../host/forwarder/command-applier.js";
import { CommandClient } from "../../host/forwarder/command-client.js";
import { CommandInbox } from "../../host/forwarder/command-inbox.js";
import { Forwarder } from "../../host/forwarder/forwarder.js";
import type { KvStore } from "../../host/kvstore/store.js";
import { packet4 } from "../../host/packet/build.js";
import { decodePacket } from "../../host/packet/decode.js";
import { FakeTun } from "../../host/tun/fake-tun.js";
import { put } from "./support.js";
import { tempEmbeddedStore, type TempStore } from "../support/kvstores.js";
import { waitFor } from "../support/wait-for.js";

const WEB = "10.1.0.5", FRONT = "10.2.0.7", OTHER = "10.2.0.8", VIP = "10.96.0.10", B2 = "10.2.0.6";
const syn = (src: string, dst: string, sport: number, dport: number) => packet4({ src, dst }).tcp({ sport, dport, flags: { syn: true } });
const ack = (src: string, dst: string, sport: number, dport: number) => packet4({ src, dst }).tcp({ sport, dport, flags: { ack: true } });

describe("agent core -> forwarder command channel", () => {
  let temp: TempStore | undefined;
  let store: KvStore;
  let core: ClusterAgentCore;
  let dp: Datapath;
  let tun: FakeTun;
  let fwd: Forwarder;
  let client: CommandClient;
  let inbox: CommandInbox;
  const lines: string[] = [];

  /** Lets the forwarder run (its loop drains commands between batches) until the agent applied everything the store holds. */
  async function converge(write?: Promise<number>, followed?: { syncedRevision: number }): Promise<void> {
    const pump = setInterval(() => fwd.step(), 1);
    try {
      const rev = (await write) ?? 0;
      if (followed) await waitFor(`the agent to follow revision ${rev}`, () => followed.syncedRevision >= rev, { intervalMs: 5 });
      await core.settled();
    } finally {
      clearInterval(pump);
    }
  }
  function forward(...packets: Uint8Array[]) {
    for (const p of packets) tun.inject(p);
    fwd.step();
    return tun.drainWritten().map((w) => decodePacket(w.packet, "ip"));
  }
  const policyDrops = () => dp.counters().drops.find((d) => d.reason === "DROP_POLICY")?.packets ?? 0;

  beforeAll(async () => {
    temp = await tempEmbeddedStore("membrane-agent-fwd-");
    store = temp.store;
    await put.node(store, "node-b", "10.0.0.2", "10.2.0.0/24");
    await put.pod(store, "shop", "web-1", "node-a", WEB, { app: "web" });
    await put.remotePod(store, "shop", "front-1", 1000, FRONT, "10.0.0.2", { app: "front" });
    await put.remotePod(store, "shop", "other-1", 1002, OTHER, "10.0.0.2", { app: "other" });
    await put.service(store, "shop", "web", VIP, 80, [[WEB, 8080]]);
    // Egress of the local pod: the TUN forwarder decides a new flow's direction from conntrack
    // ("auto": the first packet is egress, policed at its source endpoint).
    await put.egressPolicy(store, "shop", "web", "web", "front", 8080);

    let now = 1000;
    dp = await Datapath.create({ conntrack: { tcpEntries: 1024, otherEntries: 1024 }, lb: { services: 16, backends: 8 } });
    tun = new FakeTun({ mtu: 1500 });
    const { port1, port2 } = new MessageChannel();
    fwd = new Forwarder(dp, tun, { batchSize: 16, clock: () => now, betweenBatches: () => inbox.drain() });
    inbox = new CommandInbox(port2, new CommandApplier(dp, { clock: () => now, batches: () => fwd.stats.batches }));
    client = new CommandClient(port1);
    void now;
    core = new ClusterAgentCore({ store, node: "node-a", addresses: [{ type: "InternalIP", ip: "10.0.0.1" }], ipv4AllocCidr: "10.1.0.0/24", sink: new ForwarderSink(client), log: (l) => lines.push(l) });
    const pump = setInterval(() => fwd.step(), 1);
    try {
      await core.start();
    } finally {
      clearInterval(pump);
    }
    await converge();
  });

  afterAll(async () => {
    await core?.stop();
    client?.close();
    inbox?.close();
    await temp?.close();
  });

  it("records in the kvstore decide packets: web may reach front on 8080 (a pod of another node), not other; the VIP balances to web", () => {
    expect(lines.filter((l) => l.includes("refused"))).toEqual([]);
    const drops = policyDrops();
    const out = forward(syn(WEB, FRONT, 30000, 8080), syn(WEB, OTHER, 30001, 8080));
    expect(out.map((p) => [p.src, p.dst, p.dport])).toEqual([[WEB, FRONT, 8080]]);
    expect(policyDrops() - drops).toBe(1);
    const viaVip = forward(syn(FRONT, VIP, 30002, 80));
    expect(viaVip.map((p) => [p.dst, p.dport])).toEqual([[WEB, 8080]]);
  });

  it("a policy changed in the store flips the verdict for new flows; the established one passes on its entry", async () => {
    forward(ack(WEB, FRONT, 30000, 8080)); // the flow from the first test, established
    await converge(put.egressPolicy(store, "shop", "web", "web", "other", 8080), core.policies);
    const drops = policyDrops();
    const out = forward(ack(WEB, FRONT, 30000, 8080), syn(WEB, FRONT, 30010, 8080), syn(WEB, OTHER, 30011, 8080));
    expect(out.map((p) => [p.dst, p.sport])).toEqual([[FRONT, 30000], [OTHER, 30011]]);
    expect(policyDrops() - drops).toBe(1);
  });

  it("a backend added in the store: new flows may go to it, the established flow keeps its backend", async () => {
    forward(ack(FRONT, VIP, 30002, 80));
    await converge(put.service(store, "shop", "web", VIP, 80, [[WEB, 8080], [B2, 8080]]), core.services);
    expect(dp.services.listServices().map((s) => s.backends.map((b) => b.addr).sort())).toEqual([[WEB, B2]]);
    const established = forward(ack(FRONT, VIP, 30002, 80));
    expect(established.map((p) => [p.sport, p.dst])).toEqual([[30002, WEB]]);
    // 32 new flows: each picks a backend at random; the new backend takes some of them (all-on-one: p = 2^-31).
    const fresh = forward(...Array.from({ length: 32 }, (_, i) => syn(OTHER, VIP, 31000 + i, 80)));
    expect(new Set(fresh.map((p) => p.dst))).toEqual(new Set([WEB, B2]));
  });
});
