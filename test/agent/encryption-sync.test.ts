/**
 * The cluster agent's half of a rolling key update (host/agent/encryption-sync.ts)
 * on the embedded store with two real agent cores: the node record
 * advertises a key only once the forwarder reports it installed, and each
 * node's peers file (what its ESP path reads) carries the key index the
 * other node advertises.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ClusterAgentCore } from "../../host/cluster/agent-core.js";
import { keys } from "../../host/kvstore/keys.js";
import { openKvStore } from "../../host/kvstore/open.js";
import type { KvStore } from "../../host/kvstore/store.js";
import { EncryptionSync } from "../../host/agent/encryption-sync.js";
import { parsePeersFile } from "../../host/encrypt/peers-file.js";
import { ESP_STATUS_FILE } from "../../host/forwarder/esp-state-file.js";
import { RecordingSink } from "../cluster/support.js";
import { waitFor } from "../support/wait-for.js";

describe("encryption sync between the forwarder and the node record", () => {
  let dir: string;
  let store: KvStore;
  const cores: ClusterAgentCore[] = [];
  const lines: string[] = [];

  const core = (node: string, ip: string, cidr: string) => {
    const c = new ClusterAgentCore({
      store, node, addresses: [{ type: "InternalIP", ip }], ipv4AllocCidr: cidr, encryptionKey: 3,
      sink: new RecordingSink(), log: (l) => lines.push(l), backoff: { minMs: 50, maxMs: 500 },
    });
    cores.push(c);
    return c;
  };
  const record = async (node: string) => JSON.parse((await store.get(keys.node("default", node)))!.value) as { encryptionKey: number };
  /** What the forwarder's ESP path writes once a second (esp-path.ts); only currentKey is read here. */
  const forwarderReports = (stateDir: string, currentKey: number) => writeFileSync(join(stateDir, ESP_STATUS_FILE), JSON.stringify({ currentKey }));

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "membrane-encryption-sync-"));
    store = await openKvStore(`embedded:${join(dir, "store")}`);
    await core("node-a", "192.0.2.1", "10.1.0.0/24").start();
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
    const sync = new EncryptionSync({ stateDir: stateA, self: "node-a", nodes: () => a!.nodes.records.values(), advertise: (k) => a!.setEncryptionKey(k), advertised: 3, log: (l) => lines.push(l) });
    await waitFor("node-a sees node-b", () => a!.nodes.records.size === 2 || undefined);
    await sync.tick(); // no status yet: nothing advertised
    expect((await record("node-a")).encryptionKey).toBe(3);
    const peers = () => parsePeersFile(readFileSync(sync.peersFile, "utf8"), sync.peersFile);
    expect(peers()).toMatchObject([{ name: "node-b", address: "192.0.2.2", keyIndex: 3 }]);
    forwarderReports(stateA, 3);
    await sync.tick();
    expect((await record("node-a")).encryptionKey).toBe(3);
    forwarderReports(stateA, 4); // the key file changed and the forwarder installed key 4 for every peer
    await sync.tick();
    expect((await record("node-a")).encryptionKey).toBe(4);
    expect(lines.some((l) => /key 4 installed for every peer; node record now advertises it \(was 3\)/.test(l))).toBe(true);
    // node-b advertises 4 in turn: node-a's ESP path learns it through its peers file.
    await b!.setEncryptionKey(4);
    await waitFor("node-a's peers file with node-b on key 4", async () => {
      await sync.tick();
      return peers()[0]?.keyIndex === 4 || undefined;
    });
  });
});
