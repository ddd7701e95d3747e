/**
 * Routes when a node joins: the agent's route table re-deciding only the
 * joining node's routes and the ipcache entries on its address, against
 * every route again (`npm run bench:route-table`).
 *
 * Cluster: 5,000 nodes (an IPv4 and an IPv6 address, a /24 and a /64 pod
 * CIDR each) and 100,000 ipcache entries, 20 pods per node inside its CIDR
 * and every 100th outside it (a host route). The change: one more node joins
 * (no pods yet), one round.
 *
 * "every route again" is what the agent did before (RouteTable.rebuild, now
 * gone): every node's routes and every ipcache entry judged again on any node
 * change. It is timed here as `updateNodes` given every node record, which
 * does that same work. Both tables hand the sink the same diff (checked
 * before timing). The node is removed again after each iteration, untimed.
 */
import { Bench } from "tinybench";
import { RouteTable } from "../host/cluster/route-table.js";
import type { IpcacheRecord } from "../host/kvstore/records/ipcache.js";
import type { NodeRecord } from "../host/kvstore/records/node.js";
import { num, printTable } from "./report.js";

const NODES = Number(process.env.ROUTE_BENCH_NODES ?? 5000);
const PODS_PER_NODE = 20;

const address4 = (i: number) => `172.${16 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
const cidr4 = (i: number) => `10.${i >> 8}.${i & 255}.0/24`;

function node(i: number): NodeRecord {
  return {
    name: `node-${i}`, cluster: "default", encryptionKey: 0,
    addresses: [{ type: "InternalIP", ip: address4(i) }, { type: "InternalIP", ip: `fd00::${i.toString(16)}` }],
    ipv4AllocCidr: cidr4(i), ipv6AllocCidr: `fd10:0:${i.toString(16)}::/64`,
  };
}

function ipcacheOf(nodes: number): Map<string, IpcacheRecord> {
  const out = new Map<string, IpcacheRecord>();
  for (let i = 0; i < nodes; i++) {
    for (let p = 0; p < PODS_PER_NODE; p++) {
      const j = i * PODS_PER_NODE + p;
      // every 100th pod has an address outside its node's CIDR: it needs a host route
      const prefix = j % 100 === 0 ? `10.250.${(j >> 8) & 255}.${j & 255}/32` : `10.${i >> 8}.${i & 255}.${p + 2}/32`;
      out.set(`ipcache/${prefix}`, { prefix, identity: 1000 + (j % 500), encryptionKey: 0, hostIp: address4(i) });
    }
  }
  return out;
}

function table(nodes: Map<string, NodeRecord>, ipcache: Map<string, IpcacheRecord>): RouteTable {
  const t = new RouteTable("node-0");
  for (const [key, record] of ipcache) t.updateIpcache(key, record);
  t.updateNodes(nodes.entries(), ipcache.entries());
  t.pending();
  t.commit();
  return t;
}

export async function runRouteTable(): Promise<unknown> {
  const setupStart = performance.now();
  const nodes = new Map<string, NodeRecord>();
  for (let i = 0; i < NODES; i++) nodes.set(`node-${i}`, node(i));
  const ipcache = ipcacheOf(NODES);
  const tables = { incremental: table(nodes, ipcache), everything: table(nodes, ipcache) };
  const setupMs = performance.now() - setupStart;
  const joining = node(NODES);
  const key = joining.name;

  const join = {
    incremental: (t: RouteTable) => t.updateNodes([[key, joining]], ipcache.entries()),
    everything: (t: RouteTable) => {
      nodes.set(key, joining);
      t.updateNodes(nodes.entries(), ipcache.entries());
      nodes.delete(key);
    },
  };
  const leave = (t: RouteTable) => {
    t.updateNodes([[key, undefined]], ipcache.entries());
    t.pending();
    t.commit();
  };

  // Both hand the sink the same diff (checked before anything is timed).
  const diffs = Object.entries(tables).map(([name, t]) => {
    join[name as keyof typeof join](t);
    const d = t.pending();
    t.commit();
    leave(t);
    return JSON.stringify(d);
  });
  if (diffs[0] !== diffs[1]) throw new Error(`the incremental table and every-route-again gave different diffs:\n${diffs[0]}\n${diffs[1]}`);

  const bench = new Bench({ time: 3000, warmupTime: 300, iterations: 5, warmupIterations: 1, timestampProvider: "hrtimeNow", throws: true });
  for (const [name, t] of Object.entries(tables)) {
    bench.add(name, () => {
      join[name as keyof typeof join](t);
      t.pending();
      t.commit();
    }, { async: false, afterEach: () => leave(t) });
  }
  await bench.run();

  const stat = (name: string) => bench.tasks.find((t) => t.name === name)!.result as unknown as { latency: { mean: number; p50: number; rme: number; samplesCount: number } };
  const inc = stat("incremental").latency, all = stat("everything").latency;
  printTable(`Routes for one node joining a ${num(NODES)}-node cluster with ${num(ipcache.size)} ipcache entries (one round)`, [
    { path: "incremental (the changed node, entries on its address)", "mean ms": num(inc.mean, 3), "p50 ms": num(inc.p50, 3), "±%": num(inc.rme, 1), samples: inc.samplesCount },
    { path: "every route again (as before)", "mean ms": num(all.mean, 3), "p50 ms": num(all.p50, 3), "±%": num(all.rme, 1), samples: all.samplesCount },
  ], [
    `every route again / incremental: ${num(all.mean / inc.mean, 1)}x (mean), ${num(all.p50 / inc.p50, 1)}x (p50)`,
    `both gave the sink the same diff (checked): ${diffs[0]}`,
    `500 nodes joining one per round on 20 full agents, as the simulator's burst can deliver them: ${num((20 * 500 * all.mean) / 1000, 1)} s vs ${num((20 * 500 * inc.mean) / 1000, 1)} s of CPU (computed from the means)`,
    `tables built in ${num(setupMs, 0)} ms`,
  ]);
  return { nodes: NODES, ipcache: ipcache.size, incremental: { meanMs: inc.mean, p50Ms: inc.p50 }, everything: { meanMs: all.mean, p50Ms: all.p50 }, ratio: all.mean / inc.mean };
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  runRouteTable().catch((err) => { console.error(err); process.exitCode = 1; });
}
