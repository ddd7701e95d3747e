/**
 * The forwarder's "peers" command (host/forwarder/command-applier.ts): the
 * cluster agent hands the ESP path its peers through it. A valid set
 * replaces the tunnel's peers, so a packet to a new node's pod is sealed
 * for it at once; a bad set is refused naming the field and changes
 * nothing; a forwarder without an ESP path refuses it as NOT_SUPPORTED.
 */
import { describe, expect, it } from "vitest";
import { Datapath } from "../../host/datapath.js";
import { CommandApplier } from "../../host/forwarder/command-applier.js";
import { EspTunnel } from "../../host/encrypt/tunnel.js";
import { Keyring } from "../../host/encrypt/keyring.js";
import { packet4 } from "../../host/packet/build.js";

const toPod = (dst: string) => packet4({ src: "10.1.0.5", dst }).udp({ sport: 4000, dport: 53 });

describe("the peers command", () => {
  it("replaces the ESP path's peers; a bad set is refused whole; no ESP path, no peers", async () => {
    const dp = await Datapath.create({ conntrack: { tcpEntries: 64, otherEntries: 64 } });
    const tunnel = new EspTunnel(new Keyring(300));
    const applier = new CommandApplier(dp, { clock: () => 1000, batches: () => 7, setPeers: (p) => tunnel.setPeers(p) });

    expect(tunnel.route(toPod("10.2.0.7"))).toBeUndefined();
    const node2 = { name: "node-2", address: "192.0.2.2", cidrs: ["10.2.0.0/24"], keyIndex: 3 };
    expect(applier.apply({ kind: "peers", peers: [node2] })).toEqual({ ok: true, kind: "peers", summary: "ESP peers: 1", warnings: [], batch: 7 });
    expect(tunnel.route(toPod("10.2.0.7"))).toMatchObject({ name: "node-2", address: "192.0.2.2", keyIndex: 3 });
    expect(tunnel.route(toPod("10.3.0.7"))).toBeUndefined();

    // One bad entry: nothing of the set is taken, node-2 stays.
    const bad = applier.apply({ kind: "peers", peers: [node2, { name: "node-3", address: "192.0.2.3", cidrs: ["10.3.0.0/33"], keyIndex: 3 }] });
    expect(bad).toMatchObject({ ok: false, kind: "peers", code: "INVALID_INPUT", message: expect.stringMatching(/^peers\.peers\[1\]\.cidrs\[0\]: /) });
    expect(tunnel.route(toPod("10.2.0.7"))?.name).toBe("node-2");
    expect(tunnel.route(toPod("10.3.0.7"))).toBeUndefined();
    expect(applier.apply({ kind: "peers", peers: "node-3" as never })).toMatchObject({ ok: false, message: "peers.peers: expected a list of peers" });
    expect(applier.apply({ kind: "peers", peers: [], extra: 1 } as never)).toMatchObject({ ok: false, message: "peers.extra: unknown key (allowed: kind, peers)" });

    // The set is whole: an empty one forgets node-2.
    expect(applier.apply({ kind: "peers", peers: [] })).toMatchObject({ ok: true, summary: "ESP peers: 0" });
    expect(tunnel.route(toPod("10.2.0.7"))).toBeUndefined();

    const plain = new CommandApplier(dp, { clock: () => 1000, batches: () => 0 });
    expect(plain.apply({ kind: "peers", peers: [node2] })).toMatchObject({ ok: false, kind: "peers", code: "NOT_SUPPORTED", message: expect.stringContaining("does not encrypt") });
  });
});
