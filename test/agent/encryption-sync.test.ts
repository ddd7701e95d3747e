/**
 * Encryption in the cluster agent, on the embedded store with real agent
 * cores: the node record advertises a key only once the forwarder reports
 * it installed (host/agent/encryption-sync.ts); the ESP path is handed each
 * peer, with the key index that peer advertises, before any route sends its
 * pods' packets into the TUN (agent-core.ts applyPeers); and a sink that
 * refuses the peers holds those routes back until it takes them.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ClusterAgentCore } from "../../host/cluster/agent-core.js";
import { keys } from "../../host/kvstore/keys.js";
import { openKvStore } from "../../host/kvstore/open.js";
import type { KvStore } from "../../host/kvstore/store.js";
import { EncryptionSync } from "../../host/agent/encryption-sync.js";
import { ESP_STATUS_FILE } from "../../host/forwarder/esp-state-file.js";
import { RecordingSink } from "../cluster/support.js";
import { waitFor } from "../support/wait-for.js";

describe("encryption sync between the forwarder and the node record", () => {
  let dir: string;
  let store: KvStore;
  const cores: ClusterAgentCore[] = [];
  const lines: string[] = [];

  const sinkA = new RecordingSink();
  const core = (node: string, ip: string, cidr: string, sink = new RecordingSink()) => {
    const c = new ClusterAgentCore({
      store, node, addresses: [{ type: "InternalIP", ip }], ipv4AllocCidr: cidr, encryptionKey: 3,
      sink, log: (l) => lines.push(l), backoff: { minMs: 50, maxMs: 500 }, encryptInto: "mtun0",
    });
    cores.push(c);
    return c;
  };
  /** node-a's last peer set, as its ESP path would hold it. */
  const peersOfA = () => sinkA.peerChanges.at(-1) ?? [];
  /** Every prefix node-a ever routed into the TUN. */
  const sealedRoutesOfA = () => sinkA.routeChanges.flatMap((c) => c.replace.filter((r) => r.device === "mtun0").map((r) => r.prefix));
  /** The position in node-a's sink calls of the first peers set naming `node`, and of the first route change with `prefix`. */
  const firstPeersWith = (node: string) => {
    let seen = 0;
    for (const [i, kind] of sinkA.order.entries()) if (kind === "peers" && sinkA.peerChanges[seen++]!.some((p) => p.name === node)) return i;
    return -1;
  };
  const firstRouteTo = (prefix: string) => {
    let seen = 0;
    for (const [i, kind] of sinkA.order.entries()) if (kind === "routes" && sinkA.routeChanges[seen++]!.replace.some((r) => r.prefix === prefix)) return i;
    return -1;
  };
  const record = async (node: string) => JSON.parse((await store.get(keys.node("default", node)))!.value) as { encryptionKey: number };
  /** What the forwarder's ESP path writes once a second (esp-path.ts); only currentKey is read here. */
  const forwarderReports = (stateDir: string, currentKey: number) => writeFileSync(join(stateDir, ESP_STATUS_FILE), JSON.stringify({ currentKey }));

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "membrane-encryption-sync-"));
    store = await openKvStore(`embedded:${join(dir, "store")}`);
    await core("node-a", "192.0.2.1", "10.1.0.0/24", sinkA).start();
    await core("node-b", "192.0.2.2", "10.2.0.0/24").start();
  });

  afterAll(async () => {
    for (const c of cores) await c.stop();
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("advertises a key only once the forwarder has it, and follows the peer's advertisement", async () => {
    const [a, b] = cores;
    const stateA = mkdtempSync(join(dir, "a-"));
    const sync = new EncryptionSync({ stateDir: stateA, advertise: (k) => a!.setEncryptionKey(k), advertised: 3, log: (l) => lines.push(l) });
    await waitFor("node-a routes node-b's pods into the TUN", async () => (await a!.settled(), sealedRoutesOfA().includes("10.2.0.0/24") || undefined));
    await sync.tick(); // no status yet: nothing advertised
    expect((await record("node-a")).encryptionKey).toBe(3);
    expect(peersOfA()).toEqual([{ name: "node-b", address: "192.0.2.2", cidrs: ["10.2.0.0/24"], keyIndex: 3 }]);
    expect(firstPeersWith("node-b")).toBeGreaterThanOrEqual(0);
    expect(firstPeersWith("node-b")).toBeLessThan(firstRouteTo("10.2.0.0/24"));
    forwarderReports(stateA, 3);
    await sync.tick();
    expect((await record("node-a")).encryptionKey).toBe(3);
    forwarderReports(stateA, 4); // the key file changed and the forwarder installed key 4 for every peer
    await sync.tick();
    expect((await record("node-a")).encryptionKey).toBe(4);
    expect(lines.some((l) => /key 4 installed for every peer; node record now advertises it \(was 3\)/.test(l))).toBe(true);
    // node-b advertises 4 in turn: node-a's ESP path learns it in the round that sees node-b's record change.
    await b!.setEncryptionKey(4);
    await waitFor("node-a's peers with node-b on key 4", async () => (await a!.settled(), peersOfA()[0]?.keyIndex === 4 || undefined));
  });

  it("holds the routes to a new node back while the ESP path refuses the peers, and sends both once it takes them", async () => {
    const a = cores[0]!;
    sinkA.refusePeers = "the forwarder is restarting";
    await core("node-c", "192.0.2.3", "10.3.0.0/24").start();
    await waitFor("node-a to try node-c's peers", async () => (await a.settled(), lines.some((l) => l.includes("encryption peers: the forwarder is restarting; the routes into mtun0 wait for them")) || undefined));
    await a.settled();
    expect(sealedRoutesOfA()).not.toContain("10.3.0.0/24");
    expect(peersOfA().map((p) => p.name)).toEqual(["node-b"]);
    sinkA.refusePeers = undefined;
    // The next node change brings node-c's route with the new one: both after their peers.
    await core("node-d", "192.0.2.4", "10.4.0.0/24").start();
    await waitFor("node-a routes node-c and node-d into the TUN", async () => (await a.settled(), (sealedRoutesOfA().includes("10.3.0.0/24") && sealedRoutesOfA().includes("10.4.0.0/24")) || undefined));
    expect(peersOfA().map((p) => p.name)).toEqual(["node-b", "node-c", "node-d"]);
    expect(firstPeersWith("node-c")).toBeLessThan(firstRouteTo("10.3.0.0/24"));
    expect(firstPeersWith("node-d")).toBeLessThan(firstRouteTo("10.4.0.0/24"));
  });
});
