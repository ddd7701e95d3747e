/**
 * Where a counting agent's join goes (issue 16): the full-size cluster is
 * written once to a private etcd, then
 *   1. decode only: every prefix listed once into memory, then every record
 *      decoded with the real decoder (records codec), timed
 *      alone: the per-record decode cost;
 *   2. N counting agents join at once, exactly as in `membrane sim` (paged
 *      lists behind the list gate, each agent its own watch state): wall
 *      time, this process's CPU and etcd's CPU (/proc/<pid>/stat), per record.
 * The arithmetic for more agents is printed as arithmetic (records x agents /
 * measured rate), labelled as computed.
 *
 *   npm run build:host && node dist/bench/scale-join.js [--agents 8] [--page-size 5000] [--pages-in-flight 16] [--nodes 5000 --pods 100000 --services 20000 --label-sets 2000]
 */
import { ApiserverStandin } from "../host/sim/apiserver-standin.js";
import { agentPrefixes, CountingAgent } from "../host/sim/counting-agent.js";
import { ListGate } from "../host/sim/list-gate.js";
import { identityPut, nodeName, nodePut, podPuts, servicePut, steadyPod, type ClusterSize, type Put } from "../host/sim/model.js";
import { OperatorWriter } from "../host/sim/operator-writer.js";
import { startSimStore } from "../host/sim/store-target.js";
import { DisciplinedKvStore } from "../host/kvstore/disciplined-store.js";
import { UNLIMITED, limited } from "../host/kvstore/rate-limit.js";
import { pagedList } from "../host/kvstore/paged-list.js";
import { decodeRecord } from "../host/kvstore/records/codec.js";
import type { KeyValue, TxnOp } from "../host/kvstore/store.js";
import { loadavg } from "node:os";

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 0) throw new Error(`scale-join: --${name}: expected a whole number, got "${process.argv[i + 1]}"`);
  return v;
}

const size: ClusterSize = { nodes: arg("nodes", 5000), pods: arg("pods", 100_000), services: arg("services", 20_000), labelSets: arg("label-sets", 2000) };
const agents = arg("agents", 8);
const pageSize = arg("page-size", 5000);
const pagesInFlight = arg("pages-in-flight", 16);
const cpuNow = () => { const c = process.cpuUsage(); return (c.user + c.system) / 1e6; };

const target = await startSimStore("etcd");
const standin = await ApiserverStandin.start({ qps: 1_000_000 });
const clients = [await target.open(), await target.open()];
try {
  console.log(`scale-join: ${size.nodes} nodes, ${size.pods} pods, ${size.services} services, ${size.labelSets} label sets; ${target.location}; load ${loadavg().map((x) => x.toFixed(2)).join(" ")}`);
  const puts: Put[] = [];
  for (let n = 0; n < size.nodes; n++) puts.push(nodePut(n));
  for (let l = 0; l < size.labelSets; l++) puts.push(identityPut(l));
  for (let p = 0; p < size.pods; p++) puts.push(...podPuts(steadyPod(p, size)));
  for (let s = 0; s < size.services; s++) puts.push(servicePut(s, size));
  const operator = new DisciplinedKvStore(clients[1]!, { rateLimit: UNLIMITED });
  const writer = new OperatorWriter(() => operator);
  const batches: TxnOp[][] = [];
  for (let i = 0; i < puts.length; i += 128) batches.push(puts.slice(i, i + 128).map((p): TxnOp => ({ type: "put", key: p.key, value: p.value })));
  const w0 = performance.now();
  const failed = await writer.writeAll("write", batches);
  console.log(`wrote ${puts.length} records in ${((performance.now() - w0) / 1000).toFixed(1)} s (${failed.length} failed)`);

  // 1. decode only
  const lists: { prefix: string; kvs: KeyValue[] }[] = [];
  const l0 = performance.now();
  const c0 = cpuNow();
  const e0 = target.cpuSeconds() ?? NaN;
  for (const prefix of agentPrefixes(nodeName(0))) lists.push({ prefix, kvs: (await pagedList(clients[0]!, prefix, { pageSize })).kvs });
  const listMs = performance.now() - l0;
  const listCpu = cpuNow() - c0;
  const listEtcd = (target.cpuSeconds() ?? NaN) - e0;
  const records = lists.reduce((s, l) => s + l.kvs.length, 0);
  const bytes = lists.reduce((s, l) => s + l.kvs.reduce((b, kv) => b + kv.key.length + kv.value.length, 0), 0);
  console.log(`one agent's list: ${records} records, ${(bytes / 2 ** 20).toFixed(1)} MiB (key + value), pages of ${pageSize}`);
  console.log(`  fetch alone (one client, no decode): ${(listMs / 1000).toFixed(2)} s wall; CPU this process ${listCpu.toFixed(2)} s (${((listCpu / records) * 1e6).toFixed(2)} us/record), etcd ${listEtcd.toFixed(2)} s (${((listEtcd / records) * 1e6).toFixed(2)} us/record)`);
  for (const l of lists) {
    const t0 = performance.now();
    for (let rep = 0; rep < 3; rep++) for (const kv of l.kvs) decodeRecord(kv.key, kv.value);
    const us = ((performance.now() - t0) * 1000) / (3 * Math.max(1, l.kvs.length));
    console.log(`  decode ${l.prefix}: ${l.kvs.length} records, ${us.toFixed(2)} us/record`);
  }
  const d0 = performance.now();
  for (const l of lists) for (const kv of l.kvs) decodeRecord(kv.key, kv.value);
  const decodeUs = ((performance.now() - d0) * 1000) / records;
  console.log(`  decode all: ${decodeUs.toFixed(2)} us/record (${((decodeUs * records) / 1e6).toFixed(2)} s per agent)`);
  lists.length = 0;

  // 2. N counting agents join at once, as in membrane sim
  const gate = new ListGate(pagesInFlight);
  const backoff = { minMs: 200, maxMs: 10_000 };
  const counting = Array.from({ length: agents }, (_, i) => new CountingAgent({
    index: i, node: i, store: new DisciplinedKvStore(clients[0]!, { rateLimit: limited(20, 20), backoff }), apiserver: standin.url,
    leaseTtlSeconds: 900, backoff, onKey: () => {}, pageSize, gate,
  }));
  const j0 = performance.now();
  const jc0 = cpuNow();
  const je0 = target.cpuSeconds() ?? NaN;
  await Promise.all(counting.map((a) => a.start({ retry: "backoff", onFailure: "retry-in-place", backoff, fixedMs: 200 })));
  const joinS = (performance.now() - j0) / 1000;
  const joinCpu = cpuNow() - jc0;
  const joinEtcd = (target.cpuSeconds() ?? NaN) - je0;
  const listed = counting.reduce((s, a) => s + a.counters.listed, 0);
  const retries = counting.reduce((s, a) => s + a.counters.pageRetries, 0);
  const relists = counting.reduce((s, a) => s + a.counters.relists, 0);
  const rate = listed / joinS;
  console.log(`${agents} counting agents joined in ${joinS.toFixed(1)} s: ${listed} records (${retries} page retries, ${relists} lists begun again), ${rate.toFixed(0)} records/s; load ${loadavg().map((x) => x.toFixed(2)).join(" ")}`);
  console.log(`  CPU this process ${joinCpu.toFixed(1)} s (${((joinCpu / listed) * 1e6).toFixed(2)} us/record), etcd ${joinEtcd.toFixed(1)} s (${((joinEtcd / listed) * 1e6).toFixed(2)} us/record); wall per record ${((joinS / listed) * 1e6).toFixed(2)} us`);
  const per = listed / agents;
  for (const n of [300, 1000, 5000]) console.log(`  computed, not measured: ${n} agents x ${per.toFixed(0)} records / ${rate.toFixed(0)} records/s = ${((n * per) / rate / 60).toFixed(0)} min`);
  await Promise.all(counting.map((a) => a.stop()));
} finally {
  for (const c of clients) await c.close().catch(() => {});
  await standin.stop();
  await target.stop();
}
