/**
 * kvstore throughput and watch latency, side by side in one run
 * (`npm run bench:kvstore`):
 * - membrane's client (DisciplinedKvStore, rate limiting off) over etcd vs the
 *   raw etcd3 client on the same etcd: puts/s, gets/s, watch delivery latency
 *   p50/p99. Goal: at least 0.8x of raw.
 * - the embedded backend through membrane's client, same figures. Goal:
 *   faster than etcd on one machine.
 * - the rate limiter's accuracy: measured ops/s within 5% of the limit.
 *
 * Workload: PUTS single puts of 100-byte values at concurrency CONCURRENCY
 * (as REFERENCE.md's etcd figure: concurrency 64), then as many gets of those
 * keys, then LATENCY_PUTS puts at concurrency 4 while one watcher on the
 * prefix records, per event, the time from the put's call to the event.
 * Same keys, same values, same order for every client; the clients take
 * turns for ROUNDS rounds (default 2) and each keeps its best figures.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Etcd3 } from "etcd3";
import { DisciplinedKvStore } from "../host/kvstore/disciplined-store.js";
import { openKvStore } from "../host/kvstore/open.js";
import { limited, UNLIMITED, type RateLimit } from "../host/kvstore/rate-limit.js";
import type { KvStore } from "../host/kvstore/store.js";
import { TestEtcd } from "../test/support/etcd.js";
import { num, printTable, type Row } from "./report.js";

const PUTS = Number(process.env.KV_BENCH_PUTS ?? 4000);
const CONCURRENCY = 64;
const LATENCY_PUTS = Number(process.env.KV_BENCH_LATENCY_PUTS ?? 1000);
const VALUE = "x".repeat(100);
const ROUNDS = Number(process.env.KV_BENCH_ROUNDS ?? 2);

/** The operations a workload needs, so the raw client and membrane's run the same code. */
interface Client {
  name: string;
  put(key: string, value: string): Promise<unknown>;
  get(key: string): Promise<unknown>;
  /** Starts a watch on `prefix`; `onPut(key)` per put event; resolves once established. */
  watch(prefix: string, onPut: (key: string) => void): Promise<() => Promise<void>>;
}

interface Figures {
  putsPerSec: number;
  getsPerSec: number;
  p50: number;
  p99: number;
}

async function concurrently(n: number, concurrency: number, op: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < n; i = next++) await op(i);
    }),
  );
  return performance.now() - start;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function measure(client: Client, prefix: string): Promise<Figures> {
  const key = (i: number) => `${prefix}put/${String(i).padStart(6, "0")}`;
  await concurrently(200, 16, (i) => client.put(`${prefix}warm/${i}`, VALUE)); // connections, JIT
  const putMs = await concurrently(PUTS, CONCURRENCY, (i) => client.put(key(i), VALUE));
  const getMs = await concurrently(PUTS, CONCURRENCY, (i) => client.get(key(i)));

  const sentAt = new Map<string, number>();
  const latencies: number[] = [];
  let all!: () => void;
  const done = new Promise<void>((r) => (all = r));
  const stop = await client.watch(`${prefix}lat/`, (k) => {
    const t = sentAt.get(k);
    if (t !== undefined) latencies.push(performance.now() - t);
    if (latencies.length === LATENCY_PUTS) all();
  });
  await concurrently(LATENCY_PUTS, 4, async (i) => {
    const k = `${prefix}lat/${String(i).padStart(6, "0")}`;
    sentAt.set(k, performance.now());
    await client.put(k, VALUE);
  });
  await Promise.race([done, new Promise((r) => setTimeout(r, 30_000))]);
  await stop();
  latencies.sort((a, b) => a - b);
  if (latencies.length < LATENCY_PUTS) console.log(`  ! ${client.name}: only ${latencies.length} of ${LATENCY_PUTS} watch events arrived`);
  return { putsPerSec: (PUTS / putMs) * 1000, getsPerSec: (PUTS / getMs) * 1000, p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}

function rawEtcdClient(endpoint: string): Client & { close(): void } {
  const etcd = new Etcd3({ hosts: endpoint });
  return {
    name: "raw etcd3 client",
    put: (k, v) => etcd.put(k).value(v).exec(),
    get: (k) => etcd.get(k).string(),
    async watch(prefix, onPut) {
      const watcher = await etcd.watch().prefix(prefix).create();
      watcher.on("put", (kv) => onPut(kv.key.toString()));
      return () => watcher.cancel();
    },
    close: () => etcd.close(),
  };
}

function membraneClient(name: string, store: KvStore): Client {
  return {
    name,
    put: (k, v) => store.put(k, v),
    get: (k) => store.get(k),
    async watch(prefix, onPut) {
      const w = store.watch(prefix);
      await w.ready;
      const loop = (async () => {
        for await (const ev of w) if (ev.type === "put") onPut(ev.kv.key);
      })();
      return async () => {
        await w.close();
        await loop;
      };
    },
  };
}

/** Ops/s through a DisciplinedKvStore limited to `limit`, after its burst, over `seconds`. */
async function limiterAccuracy(inner: KvStore, limit: RateLimit & { kind: "limited" }, seconds: number): Promise<number> {
  const store = new DisciplinedKvStore(inner, { rateLimit: limit });
  for (let i = 0; i < limit.burst; i++) await store.get("bench/limiter"); // spend the burst
  const start = performance.now();
  let ops = 0;
  const until = start + seconds * 1000;
  // 8 callers compete for tokens, as an agent's watchers and writers would.
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (performance.now() < until) {
        await store.get("bench/limiter");
        ops++;
      }
    }),
  );
  return (ops / (performance.now() - start)) * 1000;
}

const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
const verdict = (ok: boolean) => (ok ? "met" : "NOT MET");

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "membrane-bench-kv-"));
  const etcd = await TestEtcd.start();
  try {
    console.log(`kvstore bench: ${PUTS} puts and gets at concurrency ${CONCURRENCY}, ${LATENCY_PUTS} watched puts at concurrency 4; etcd at ${etcd.endpoint}`);
    // The machine is shared: clients take turns, ROUNDS times, and each keeps
    // its best figures, so a burst of someone else's load does not decide a ratio.
    const raw = rawEtcdClient(etcd.endpoint);
    const etcdStore = await openKvStore(`etcd:${etcd.endpoint}`);
    const embeddedStore = await openKvStore(`embedded:${join(dir, "store")}`);
    const clients: [Client, Figures[]][] = [
      [raw, []],
      [membraneClient("membrane over etcd", new DisciplinedKvStore(etcdStore, { rateLimit: UNLIMITED })), []],
      [membraneClient("membrane embedded", new DisciplinedKvStore(embeddedStore, { rateLimit: UNLIMITED })), []],
    ];
    for (let round = 0; round < ROUNDS; round++) {
      for (const [client, figures] of clients) figures.push(await measure(client, `bench/${client.name.replace(/\W+/g, "-")}/${round}/`));
    }
    raw.close();
    const best = (f: Figures[]): Figures => ({
      putsPerSec: Math.max(...f.map((x) => x.putsPerSec)),
      getsPerSec: Math.max(...f.map((x) => x.getsPerSec)),
      p50: Math.min(...f.map((x) => x.p50)),
      p99: Math.min(...f.map((x) => x.p99)),
    });
    const [rawFigures, etcdFigures, embeddedFigures] = clients.map(([, f]) => best(f)) as [Figures, Figures, Figures];

    const row = (name: string, f: Figures): Row => ({
      client: name,
      "puts/s": num(f.putsPerSec),
      "gets/s": num(f.getsPerSec),
      "watch p50 ms": num(f.p50, 2),
      "watch p99 ms": num(f.p99, 2),
    });
    printTable(`Throughput and watch latency (same machine, same run; best of ${ROUNDS} alternating rounds)`, [
      row("raw etcd3 client -> etcd", rawFigures),
      row("membrane client (no limit) -> etcd", etcdFigures),
      row("membrane client (no limit) -> embedded", embeddedFigures),
    ]);

    const goals: Row[] = [];
    const goal = (what: string, value: string, target: string, ok: boolean) => goals.push({ figure: what, value, goal: target, result: verdict(ok) });
    goal("membrane/raw puts/s (etcd)", ratio(etcdFigures.putsPerSec, rawFigures.putsPerSec), ">= 0.80x", etcdFigures.putsPerSec >= 0.8 * rawFigures.putsPerSec);
    goal("membrane/raw gets/s (etcd)", ratio(etcdFigures.getsPerSec, rawFigures.getsPerSec), ">= 0.80x", etcdFigures.getsPerSec >= 0.8 * rawFigures.getsPerSec);
    goal("raw/membrane watch p50 (etcd)", ratio(rawFigures.p50, etcdFigures.p50), ">= 0.80x", rawFigures.p50 >= 0.8 * etcdFigures.p50);
    goal("raw/membrane watch p99 (etcd)", ratio(rawFigures.p99, etcdFigures.p99), ">= 0.80x", rawFigures.p99 >= 0.8 * etcdFigures.p99);
    goal("embedded/etcd puts/s", ratio(embeddedFigures.putsPerSec, etcdFigures.putsPerSec), "> 1x", embeddedFigures.putsPerSec > etcdFigures.putsPerSec);
    goal("embedded/etcd gets/s", ratio(embeddedFigures.getsPerSec, etcdFigures.getsPerSec), "> 1x", embeddedFigures.getsPerSec > etcdFigures.getsPerSec);
    goal("etcd/embedded watch p50", ratio(etcdFigures.p50, embeddedFigures.p50), "> 1x", etcdFigures.p50 > embeddedFigures.p50);
    goal("etcd/embedded watch p99", ratio(etcdFigures.p99, embeddedFigures.p99), "> 1x", etcdFigures.p99 > embeddedFigures.p99);

    for (const [qps, seconds] of [[20, 5], [500, 3]] as const) {
      const measured = await limiterAccuracy(embeddedStore, limited(qps, 20) as RateLimit & { kind: "limited" }, seconds);
      goal(`rate limiter at ${qps} qps (embedded, ${seconds} s)`, `${num(measured, 1)} ops/s`, `${qps} ±5%`, Math.abs(measured - qps) <= 0.05 * qps);
    }
    printTable("Goals", goals, [
      "embedded watch latency is for a watcher in the writing process (delivered at commit); other processes see writes at their next poll",
    ]);
    await etcdStore.close();
    await embeddedStore.close();
  } finally {
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
