/**
 * What asking etcd for each event's previous state (prev_kv) costs when many
 * agents watch one prefix (issue 16). etcd answers prev_kv with a Range at
 * modRevision - 1 for every event but a create, once per watcher, so one
 * write to a watched key costs it one read per watcher. The 5,000-agent run
 * of `membrane sim` spent etcd's CPU on exactly that until watches stopped
 * asking for it (WatchOptions.prevKv, default off).
 *
 * A private etcd holds `--keys` node records; `--watchers` watches (over
 * clients of `--per-client` watches each, as the simulator shares
 * connections) follow their prefix; `--updates` puts change existing keys
 * (a resync burst); the figure is the time until every watcher has every
 * update, and etcd's CPU (/proc/<pid>/stat) and Range count (its /metrics)
 * for it. Rounds alternate off / on so each pair is adjacent in time.
 *
 *   npm run build:host && node dist/bench/watch-prev-kv.js [--watchers 2000] [--per-client 25] [--keys 1000] [--updates 200] [--rounds 2]
 */
import { loadavg } from "node:os";
import { startSimStore } from "../host/sim/store-target.js";
import { nodePut } from "../host/sim/model.js";
import type { KvStore, Watch } from "../host/kvstore/store.js";
import { keys, DEFAULT_CLUSTER } from "../host/kvstore/keys.js";

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 1) throw new Error(`watch-prev-kv: --${name}: expected a whole number >= 1, got "${process.argv[i + 1]}"`);
  return v;
}

const watchers = arg("watchers", 2000);
const perClient = arg("per-client", 25);
const keyCount = arg("keys", 1000);
const updates = arg("updates", 200);
const rounds = arg("rounds", 2);
const prefix = keys.nodes(DEFAULT_CLUSTER);
const cpuNow = () => { const c = process.cpuUsage(); return (c.user + c.system) / 1e6; };

interface Round { prevKv: boolean; seconds: number; etcdCpu: number; nodeCpu: number; ranges: number; delivered: number }

const target = await startSimStore("etcd");
const endpoint = /http:\/\/[^\s)]+/.exec(target.location)?.[0];
async function rangeTotal(): Promise<number> {
  if (!endpoint) return NaN;
  const text = await (await fetch(`${endpoint}/metrics`)).text();
  const m = /^etcd_mvcc_range_total (\S+)$/m.exec(text);
  return m ? Number(m[1]) : NaN;
}

const clients: KvStore[] = [];
try {
  for (let i = 0; i < Math.ceil(watchers / perClient) + 1; i++) clients.push(await target.open());
  const writer = clients[clients.length - 1]!;
  for (let n = 0; n < keyCount; n++) await writer.put(nodePut(n).key, nodePut(n).value);
  console.log(`watch-prev-kv: ${watchers} watchers on ${prefix} over ${clients.length - 1} clients, ${keyCount} keys, ${updates} updates per round; ${target.location}; load ${loadavg().map((x) => x.toFixed(2)).join(" ")}`);

  const results: Round[] = [];
  for (let r = 0; r < rounds * 2; r++) {
    const prevKv = r % 2 === 1;
    const from = (await writer.revision()) + 1;
    let delivered = 0;
    let wrongPrev = 0;
    let allDone!: () => void;
    const done = new Promise<void>((res) => (allDone = res));
    let pending = watchers;
    const open: Watch[] = [];
    for (let w = 0; w < watchers; w++) {
      const watch = clients[Math.floor(w / perClient)]!.watch(prefix, { fromRevision: from, prevKv });
      open.push(watch);
      void (async () => {
        let seen = 0;
        for await (const ev of watch) {
          delivered++;
          if (prevKv !== (ev.prevKv !== undefined)) wrongPrev++;
          if (++seen === updates) {
            if (--pending === 0) allDone();
            return;
          }
        }
      })();
    }
    await Promise.all(open.map((w) => w.ready));
    const ranges0 = await rangeTotal();
    const e0 = target.cpuSeconds() ?? NaN;
    const c0 = cpuNow();
    const t0 = performance.now();
    for (let u = 0; u < updates; u++) await writer.put(nodePut(u % keyCount).key, nodePut(u % keyCount).value);
    await done;
    const seconds = (performance.now() - t0) / 1000;
    const round: Round = { prevKv, seconds, etcdCpu: (target.cpuSeconds() ?? NaN) - e0, nodeCpu: cpuNow() - c0, ranges: (await rangeTotal()) - ranges0, delivered };
    results.push(round);
    await Promise.all(open.map((w) => w.close()));
    console.log(`  round ${r + 1}, prev_kv ${prevKv ? "on " : "off"}: every watcher had every update after ${seconds.toFixed(2)} s; etcd CPU ${round.etcdCpu.toFixed(2)} s (${((round.etcdCpu / delivered) * 1e6).toFixed(2)} us per delivered event), this process ${round.nodeCpu.toFixed(2)} s; etcd Range calls ${round.ranges}${wrongPrev > 0 ? `; ${wrongPrev} events with prevKv ${prevKv ? "missing" : "sent unasked"}` : ""}`);
  }
  const mean = (on: boolean, f: (r: Round) => number) => { const xs = results.filter((r) => r.prevKv === on).map(f); return xs.reduce((a, b) => a + b, 0) / xs.length; };
  console.log(`prev_kv on vs off, mean of ${rounds} adjacent pairs: etcd CPU ${mean(true, (r) => r.etcdCpu).toFixed(2)} vs ${mean(false, (r) => r.etcdCpu).toFixed(2)} s (${(mean(true, (r) => r.etcdCpu) / mean(false, (r) => r.etcdCpu)).toFixed(2)}x), delivery ${mean(true, (r) => r.seconds).toFixed(2)} vs ${mean(false, (r) => r.seconds).toFixed(2)} s (${(mean(true, (r) => r.seconds) / mean(false, (r) => r.seconds)).toFixed(2)}x), etcd Range calls ${mean(true, (r) => r.ranges).toFixed(0)} vs ${mean(false, (r) => r.ranges).toFixed(0)}`);
} finally {
  for (const c of clients) await c.close().catch(() => {});
  await target.stop();
}
