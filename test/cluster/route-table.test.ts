/**
 * The agent's incremental route table (host/cluster/route-table.ts) against
 * the from-scratch computation (routes.ts computeRoutes): after any sequence
 * of node and ipcache changes, with a sink that sometimes fails, what the
 * sink holds equals what computing every route would give.
 */
import { describe, expect, it } from "vitest";
import { RouteTable } from "../../host/cluster/route-table.js";
import { computeRoutes, type Route } from "../../host/cluster/routes.js";
import type { IpcacheRecord } from "../../host/kvstore/records/ipcache.js";
import type { NodeRecord } from "../../host/kvstore/records/node.js";
import { seededRandom } from "../support/seeded-random.js";

const NODES = 6;
const KEYS = 40;

/** A random node record for node i: its address and CIDRs move now and then, so routes change with them. */
function randomNode(i: number, r: () => number): NodeRecord {
  const addr = r() < 0.8 ? `192.0.2.${i + 1}` : `192.0.2.${i + 101}`;
  const v4 = r() < 0.85 ? `10.${i}.0.0/${r() < 0.8 ? 24 : 16}` : undefined;
  return {
    name: `n${i}`, cluster: "default", encryptionKey: 3,
    addresses: [{ type: "InternalIP", ip: addr }, ...(r() < 0.5 ? [{ type: "InternalIP" as const, ip: `fd00::${i + 1}` }] : [])],
    ...(v4 ? { ipv4AllocCidr: v4 } : {}),
    ...(r() < 0.5 ? { ipv6AllocCidr: `fd10:${i}::/64` } : {}),
  };
}

/** A random entry for key j. Each key's prefixes are its own (as ipcache keys are their prefixes): a pod inside node j%6's CIDR, a stray pod, or (keys 0-5) exactly a node's CIDR. */
function randomEntry(j: number, r: () => number): IpcacheRecord {
  const choices = [`10.${j % NODES}.0.${j + 1}/32`, `10.99.0.${j + 1}/32`, `10.${j % NODES}.${j + 1}.0/24`, ...(j < NODES ? [`10.${j}.0.0/24`] : [])];
  const hosts = [undefined, "192.0.2.250", ...Array.from({ length: NODES }, (_, i) => `192.0.2.${i + 1}`), `192.0.2.${(j % NODES) + 101}`];
  const hostIp = hosts[Math.floor(r() * hosts.length)];
  return { prefix: choices[Math.floor(r() * choices.length)]!, identity: 1000 + j, encryptionKey: 3, ...(hostIp ? { hostIp } : {}) };
}

const asSink = (routes: Route[]) => new Map(routes.map((x) => [x.prefix, `${x.via} ${x.device ?? ""}`]));

describe("the incremental route table", () => {
  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
    const encryptInto = seed % 2 === 0 ? "mbr0" : undefined;
    it(`seed ${seed}${encryptInto ? ", encryption on" : ""}: after every applied round the sink holds exactly computeRoutes' set`, () => {
      const r = seededRandom(seed);
      const nodes = new Map<string, NodeRecord>();
      const ipcache = new Map<string, IpcacheRecord>();
      const table = new RouteTable("n0", { encryptInto });
      const sink = new Map<string, string>();
      let checked = 0;
      for (let step = 0; step < 400; step++) {
        const nodeKeys: string[] = [];
        const ipKeys: string[] = [];
        if (r() < 0.2) {
          for (let k = 1 + Math.floor(r() * 2); k > 0; k--) {
            const i = Math.floor(r() * NODES);
            if (r() < 0.2) nodes.delete(`n${i}`);
            else nodes.set(`n${i}`, randomNode(i, r));
            nodeKeys.push(`n${i}`);
          }
        }
        if (nodeKeys.length === 0 || r() < 0.3) {
          for (let k = 1 + Math.floor(r() * 3); k > 0; k--) {
            const key = `k${Math.floor(r() * KEYS)}`;
            if (r() < 0.25) ipcache.delete(key);
            else ipcache.set(key, randomEntry(Number(key.slice(1)), r));
            ipKeys.push(key);
          }
        }
        // as the agent's round does
        if (nodeKeys.length > 0) table.updateNodes(nodeKeys.map((key) => [key, nodes.get(key)]), ipcache.entries());
        for (const key of ipKeys) table.updateIpcache(key, ipcache.get(key));
        const diff = table.pending();
        if (r() < 0.2) continue; // the sink failed: nothing committed, the next round must still bring it level
        for (const x of diff.remove) sink.delete(x.prefix);
        for (const x of diff.add) sink.set(x.prefix, `${x.via} ${x.device ?? ""}`);
        table.commit();
        const want = computeRoutes("n0", nodes.values(), ipcache.values(), { encryptInto });
        expect(sink, `seed ${seed} step ${step}`).toEqual(asSink(want));
        expect(table.list()).toEqual(want);
        checked++;
      }
      expect(checked).toBeGreaterThan(250);
    });
  }

  it("one changed ipcache entry among 10,000 is one route for the sink, and one removal when it goes", () => {
    const nodes: NodeRecord[] = [
      { name: "n0", cluster: "default", encryptionKey: 0, addresses: [{ type: "InternalIP", ip: "192.0.2.1" }], ipv4AllocCidr: "10.0.0.0/24" },
      { name: "n1", cluster: "default", encryptionKey: 0, addresses: [{ type: "InternalIP", ip: "192.0.2.2" }], ipv4AllocCidr: "10.1.0.0/16" },
    ];
    const ipcache = new Map<string, IpcacheRecord>();
    for (let j = 0; j < 10_000; j++) ipcache.set(`k${j}`, { prefix: `10.1.${j >> 8}.${j & 255}/32`, identity: 1000, encryptionKey: 0, hostIp: "192.0.2.2" });
    ipcache.set("stray", { prefix: "10.9.0.1/32", identity: 1000, encryptionKey: 0, hostIp: "192.0.2.2" });
    const table = new RouteTable("n0");
    table.updateNodes(nodes.map((n) => [n.name, n]), ipcache.entries());
    const first = table.pending();
    expect(first.add.map((x) => x.prefix)).toEqual(["10.1.0.0/16", "10.9.0.1/32"]); // pods inside n1's CIDR need no route of their own
    table.commit();
    const moved: IpcacheRecord = { prefix: "10.2.0.7/32", identity: 1000, encryptionKey: 0, hostIp: "192.0.2.2" };
    table.updateIpcache("k7", moved); // k7 is now outside n1's CIDR: a host route
    expect(table.pending()).toEqual({ add: [{ prefix: "10.2.0.7/32", via: "192.0.2.2", node: "n1" }], remove: [] });
    table.commit();
    table.updateIpcache("k7", undefined);
    expect(table.pending()).toEqual({ add: [], remove: [{ prefix: "10.2.0.7/32", via: "192.0.2.2", node: "n1" }] });
  });

  it("a node joining re-decides only its own routes and the entries on its address", () => {
    const node = (i: number): NodeRecord => ({ name: `n${i}`, cluster: "default", encryptionKey: 0, addresses: [{ type: "InternalIP", ip: `192.0.2.${i + 1}` }], ipv4AllocCidr: `10.${i}.0.0/24` });
    const ipcache = new Map<string, IpcacheRecord>();
    // pods of n1 inside its CIDR, and one pod of the node that has not joined yet (192.0.2.3: n2's address)
    for (let j = 0; j < 1000; j++) ipcache.set(`k${j}`, { prefix: `10.1.0.${j & 255}/32`, identity: 1000, encryptionKey: 0, hostIp: "192.0.2.2" });
    ipcache.set("early", { prefix: "10.2.0.5/32", identity: 1000, encryptionKey: 0, hostIp: "192.0.2.3" });
    const table = new RouteTable("n0");
    // as an agent's first round: every listed ipcache entry and node record is a change
    for (const [key, record] of ipcache) table.updateIpcache(key, record);
    table.updateNodes([["n0", node(0)], ["n1", node(1)]], ipcache.entries());
    // no node has 192.0.2.3 yet: the early pod gets a host route via that address
    expect(table.pending().add).toEqual([
      { prefix: "10.1.0.0/24", via: "192.0.2.2", node: "n1" },
      { prefix: "10.2.0.5/32", via: "192.0.2.3", node: "192.0.2.3" },
    ]);
    table.commit();
    // n2 joins: its CIDR route comes, and the early pod, now inside n2's CIDR, needs no host route
    table.updateNodes([["n2", node(2)]], ipcache.entries());
    expect(table.pending()).toEqual({ add: [{ prefix: "10.2.0.0/24", via: "192.0.2.3", node: "n2" }], remove: [{ prefix: "10.2.0.5/32", via: "192.0.2.3", node: "192.0.2.3" }] });
    table.commit();
    // n1 leaves: its CIDR route goes, and each of its pods needs a host route via its (now unnamed) address
    table.updateNodes([["n1", undefined]], ipcache.entries());
    const d = table.pending();
    expect(d.remove).toEqual([{ prefix: "10.1.0.0/24", via: "192.0.2.2", node: "n1" }]);
    expect(d.add).toHaveLength(256);
    expect(d.add[0]).toEqual({ prefix: "10.1.0.0/32", via: "192.0.2.2", node: "192.0.2.2" });
  });

  it("a pod CIDR two nodes claim routes to the first claimant while it claims it, then to the other", () => {
    const a: NodeRecord = { name: "a", cluster: "default", encryptionKey: 0, addresses: [{ type: "InternalIP", ip: "192.0.2.1" }], ipv4AllocCidr: "10.5.0.0/24" };
    const b: NodeRecord = { name: "b", cluster: "default", encryptionKey: 0, addresses: [{ type: "InternalIP", ip: "192.0.2.2" }], ipv4AllocCidr: "10.5.0.0/24" };
    const table = new RouteTable("self");
    table.updateNodes([["a", a], ["b", b]], []);
    expect(table.pending().add).toEqual([{ prefix: "10.5.0.0/24", via: "192.0.2.1", node: "a" }]);
    expect(computeRoutes("self", [a, b], [])).toEqual([{ prefix: "10.5.0.0/24", via: "192.0.2.1", node: "a" }]);
    table.commit();
    table.updateNodes([["a", undefined]], []);
    expect(table.pending()).toEqual({ add: [{ prefix: "10.5.0.0/24", via: "192.0.2.2", node: "b" }], remove: [] });
  });
});
