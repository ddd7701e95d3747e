/**
 * Faults the kvstore must survive:
 * - etcd killed with SIGKILL and restarted (twice) under write and watch
 *   churn: every watcher's events equal the store's history, revision by
 *   revision (nothing lost, nothing repeated), and hold every acknowledged write;
 * - an embedded-store writer PROCESS killed with SIGKILL mid-stream: every
 *   write it acknowledged is there, nothing it wrote is half there, the log is
 *   gap-free and the store keeps working;
 * - two processes writing to one embedded store at once.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { openKvStore } from "../../host/kvstore/open.js";
import type { KvStore, Watch, WatchEvent } from "../../host/kvstore/store.js";
import { describeIf } from "../support/describe-if.js";
import { TestEtcd, etcdMissing } from "../support/etcd.js";
import { REPO_ROOT, tsNodeArgs } from "../support/ts-child.js";
import { retrying } from "./conformance.js";
import { pause, waitFor } from "../support/wait-for.js";

/** Collects a watch's events in the background. */
class Collector {
  readonly events: WatchEvent[] = [];
  error: unknown;
  constructor(readonly watch: Watch) {
    void (async () => {
      try {
        for await (const ev of watch) this.events.push(ev);
      } catch (err) {
        this.error = err;
      }
    })();
  }
  get lastRevision(): number {
    return this.events.at(-1)?.revision ?? 0;
  }
  /** Waits until an event at `revision` or later arrived (fails instead of hanging). */
  async until(revision: number, what: string): Promise<void> {
    await waitFor(what, () => this.error !== undefined || this.lastRevision >= revision, {
      detail: () => `reached revision ${this.lastRevision}, not ${revision}`,
    });
    if (this.error) throw new Error(`${what}: watch failed: ${String(this.error)}`);
    // the other events of that revision were pushed in the same tick: let the loop drain them
    await new Promise((r) => setImmediate(r));
  }
}

const sig = (e: WatchEvent): string => `${e.revision} ${e.type} ${e.kv.key} ${e.kv.value}`;

/** Checks that a sequence of events is strictly ordered: revision never goes down, no (revision, key) twice. */
function expectStrictOrder(events: WatchEvent[]): void {
  const seen = new Set<string>();
  let last = 0;
  for (const e of events) {
    expect(e.revision).toBeGreaterThanOrEqual(last);
    last = e.revision;
    const id = `${e.revision} ${e.kv.key}`;
    expect(seen.has(id)).toBe(false);
    seen.add(id);
  }
}

describeIf("etcd killed with SIGKILL under write and watch churn", etcdMissing(), () => {
  let etcd: TestEtcd;
  beforeAll(async () => {
    etcd = await TestEtcd.start();
  });
  afterAll(async () => {
    await etcd?.stop();
  });

  it("watchers resume from their revision with no event lost or repeated", async () => {
    const writer = await openKvStore(etcd.spec);
    const watcherStore = await openKvStore(etcd.spec);
    const p = "churn/";
    try {
      const start = (await writer.revision()) + 1;
      const all = new Collector(watcherStore.watch(p, { fromRevision: start }));
      const sub = new Collector(watcherStore.watch(`${p}w0/`, { fromRevision: start }));
      const acked: Array<{ key: string; value: string; revision: number }> = [];
      let stop = false;
      const loop = async (w: number): Promise<void> => {
        for (let i = 0; !stop; i++) {
          const key = `${p}w${w}/k${i % 5}`;
          const value = `${w}-${i}`;
          if (i % 7 === 6) {
            const r = await retrying(() => writer.deletePrefix(`${p}w${w}/`), "churn delete");
            // a delete that found nothing (e.g. a retry of one that did apply) writes no revision of its own
            if (r.deleted > 0) acked.push({ key: `${p}w${w}/`, value: "", revision: r.revision });
          } else {
            acked.push({ key, value, revision: await retrying(() => writer.put(key, value), "churn put") });
          }
        }
      };
      const loops = [0, 1, 2].map((w) => loop(w));
      let late: Collector | undefined;
      for (let round = 0; round < 2; round++) {
        const before = acked.length;
        await waitFor("40 more acknowledged writes", () => acked.length >= before + 40, { intervalMs: 10 });
        await etcd.kill9();
        // a watch created while etcd is down, from an old revision, must catch up once it is back
        if (round === 0) late = new Collector(watcherStore.watch(p, { fromRevision: start }));
        await etcd.restart();
      }
      const beforeStop = acked.length;
      await waitFor("40 more acknowledged writes after the restarts", () => acked.length >= beforeStop + 40, { intervalMs: 10 });
      stop = true;
      await Promise.all(loops);
      const final = await writer.revision();

      // the reference: the store's own history, read after the churn by a fresh watch
      const reference = new Collector(watcherStore.watch(p, { fromRevision: start }));
      await reference.until(final, "reference");
      for (const [name, c] of [["all", all], ["late", late!]] as const) {
        await c.until(final, name);
        expect(c.events.map(sig)).toEqual(reference.events.map(sig));
      }
      await sub.until(Math.max(...reference.events.filter((e) => e.kv.key.startsWith(`${p}w0/`)).map((e) => e.revision)), "sub");
      expect(sub.events.map(sig)).toEqual(reference.events.filter((e) => e.kv.key.startsWith(`${p}w0/`)).map(sig));
      expectStrictOrder(reference.events);

      // every acknowledged write is in the history at the revision it was acknowledged with
      const byRevision = new Map<number, WatchEvent[]>();
      for (const e of reference.events) byRevision.set(e.revision, [...(byRevision.get(e.revision) ?? []), e]);
      for (const a of acked) {
        const evs = byRevision.get(a.revision) ?? [];
        if (a.value === "") {
          expect(evs.length).toBeGreaterThan(0);
          expect(evs.every((e) => e.type === "delete" && e.kv.key.startsWith(a.key))).toBe(true);
        }
        else expect(evs.map((e) => `${e.kv.key}=${e.kv.value}`)).toEqual([`${a.key}=${a.value}`]);
      }
      for (const c of [all, sub, late!, reference]) await c.watch.close();
    } finally {
      await writer.close();
      await watcherStore.close();
    }
  });
});

describe("embedded store under process faults", () => {
  let dir: string;
  const fixture = (name: string) => join(REPO_ROOT, "test/fixtures/kvstore", name);
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "membrane-kvfault-"));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  interface Writer {
    child: ChildProcess;
    acks: Map<number, number>;
    /** Acknowledged compare-and-swap increments: revision -> the value written. */
    incs: Map<number, string>;
    ready: Promise<void>;
    exited: Promise<number | null>;
    onAck: (n: number) => Promise<void>;
  }

  function startWriter(spec: string, prefix: string, count: number, counterKey?: string): Writer {
    const args = tsNodeArgs(fixture("writer.ts"), spec, prefix, String(count));
    if (counterKey) args.push(counterKey);
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
    const acks = new Map<number, number>();
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    const waiters: Array<{ n: number; resolve: () => void }> = [];
    let markReady!: () => void;
    const w: Writer = {
      child,
      acks,
      incs: new Map(),
      ready: new Promise<void>((r) => (markReady = r)),
      exited: new Promise((resolve) =>
        child.once("exit", (code) => {
          if (code !== 0 && child.signalCode !== "SIGKILL") console.error(`writer ${prefix} failed: ${stderr}`);
          resolve(code);
        }),
      ),
      onAck: (n) => new Promise<void>((resolve) => (acks.size >= n ? resolve() : waiters.push({ n, resolve }))),
    };
    createInterface({ input: child.stdout! }).on("line", (line) => {
      const [kind, i, rev, value] = line.split(" ");
      if (kind === "ready") markReady();
      if (kind === "ack") acks.set(Number(i), Number(rev));
      if (kind === "inc") w.incs.set(Number(rev), value!);
      for (const x of waiters.filter((x) => acks.size >= x.n)) {
        waiters.splice(waiters.indexOf(x), 1);
        x.resolve();
      }
    });
    return w;
  }

  /** All events since revision 1: the log is gap-free (every revision has events) and ends at the current revision. */
  async function fullHistory(s: KvStore): Promise<WatchEvent[]> {
    const rev = await s.revision();
    const c = new Collector(s.watch("", { fromRevision: 1, prevKv: true }));
    await c.until(rev, "full history");
    await c.watch.close();
    const evs = c.events;
    const revs = [...new Set(evs.map((e) => e.revision))];
    expect(revs).toEqual([...Array(rev).keys()].map((i) => i + 1));
    return evs;
  }

  it("a writer killed with SIGKILL mid-stream loses only unacknowledged writes and leaves nothing partial", async () => {
    const path = join(dir, "killed");
    const spec = `embedded:${path}`;
    const observer = await openKvStore(spec, { embedded: { pollIntervalMs: 10 } });
    try {
      const watch = new Collector(observer.watch("kill/", { fromRevision: 1 }));
      const w = startWriter(spec, "kill/", 0);
      await w.ready;
      await w.onAck(60 + Math.floor(Math.random() * 120));
      w.child.kill("SIGKILL");
      await w.exited;
      expect(w.child.signalCode).toBe("SIGKILL");

      const after = await openKvStore(spec);
      try {
        const list = await after.list("kill/");
        const a = new Map(list.kvs.filter((kv) => kv.key.startsWith("kill/a/")).map((kv) => [Number(kv.key.slice(7)), kv]));
        const b = new Map(list.kvs.filter((kv) => kv.key.startsWith("kill/b/")).map((kv) => [Number(kv.key.slice(7)), kv]));
        // every acknowledged write is there, at its acknowledged revision
        for (const [i, rev] of w.acks) {
          expect(a.get(i)?.modRevision).toBe(rev);
          expect(b.get(i)?.modRevision).toBe(rev);
        }
        // nothing half-written: the pairs match, and at most the one write in flight went beyond the acks
        expect([...a.keys()].sort((x, y) => x - y)).toEqual([...b.keys()].sort((x, y) => x - y));
        for (const [i, kv] of a) expect(b.get(i)?.modRevision).toBe(kv.modRevision);
        const lastAck = Math.max(...w.acks.keys());
        expect(a.size === lastAck + 1 || a.size === lastAck + 2).toBe(true);
        const history = await fullHistory(after);
        expect(history).toHaveLength(a.size * 2);
        // the store still works after the crash, for every process
        const r = await after.put("kill/after", "ok");
        await watch.until(r, "observer");
        expect(watch.events.map((e) => e.revision)).toEqual(history.map((e) => e.revision).concat(r));
      } finally {
        await after.close();
        await watch.watch.close();
      }
    } finally {
      await observer.close();
    }
  });

  it("two processes writing at once: every acknowledged write kept, no revision given twice, no CAS increment lost", async () => {
    const path = join(dir, "two");
    const spec = `embedded:${path}`;
    const n = 60;
    const w1 = startWriter(spec, "two/p1/", n, "two/counter");
    const w2 = startWriter(spec, "two/p2/", n, "two/counter");
    expect(await w1.exited).toBe(0);
    expect(await w2.exited).toBe(0);
    expect(w1.acks.size).toBe(n);
    expect(w2.acks.size).toBe(n);
    const revs1 = new Set(w1.acks.values());
    for (const r of w2.acks.values()) expect(revs1.has(r)).toBe(false);
    const s = await openKvStore(spec);
    try {
      // every acknowledged increment is in the log at its revision with its value,
      // and each one built on the one before (a lost swap shows here by revision)
      const counterHistory = (await fullHistory(s)).filter((e) => e.kv.key === "two/counter");
      const logged = new Map(counterHistory.map((e) => [e.revision, e.kv.value]));
      const acked = new Map([...w1.incs, ...w2.incs]);
      expect(acked.size).toBe(2 * n);
      for (const [rev, value] of acked) expect(`revision ${rev}: ${logged.get(rev)}`).toBe(`revision ${rev}: ${value}`);
      counterHistory.forEach((e, i) => {
        expect(`revision ${e.revision}: ${e.kv.value} after ${e.prevKv?.value} at ${e.prevKv?.modRevision}`).toBe(
          `revision ${e.revision}: ${i + 1} after ${i === 0 ? undefined : i} at ${i === 0 ? undefined : counterHistory[i - 1]!.revision}`,
        );
      });
      expect((await s.get("two/counter"))?.value).toBe(String(2 * n));
      for (const [prefix, w] of [["two/p1/", w1], ["two/p2/", w2]] as const) {
        for (const [i, rev] of w.acks) {
          expect((await s.get(`${prefix}a/${i}`))?.modRevision).toBe(rev);
          expect((await s.get(`${prefix}b/${i}`))?.modRevision).toBe(rev);
        }
      }
      const history = await fullHistory(s);
      // 2 writers x n pair-writes (2 events) + 2n counter increments (1 event)
      expect(history).toHaveLength(2 * n * 2 + 2 * n);
    } finally {
      await s.close();
    }
  });

  it("processes opening the store while another writes never roll back a commit", async () => {
    // LMDB sets the shared "last committed transaction" from the meta page it
    // read when an environment is opened, outside the writer mutex: an open
    // racing a commit used to hand the next writer a stale snapshot, and that
    // writer silently overwrote the acknowledged commit (docs/kvstore.md)
    const path = join(dir, "opens");
    const spec = `embedded:${path}`;
    const n = 300;
    const w = startWriter(spec, "opens/", n);
    await w.ready;
    let running = true;
    void w.exited.then(() => (running = false));
    let opens = 0;
    while (running) {
      const s = await openKvStore(spec);
      await s.close();
      opens++;
      // open and close can complete in microtasks alone: give the event loop a turn, or the writer's exit is never seen
      await new Promise((r) => setImmediate(r));
    }
    expect(await w.exited).toBe(0);
    expect(opens).toBeGreaterThan(10);
    expect(w.acks.size).toBe(n);
    // each acknowledged write has a revision of its own...
    expect(new Set(w.acks.values()).size).toBe(n);
    const s = await openKvStore(spec);
    try {
      // ...and is still there at that revision
      for (const [i, rev] of w.acks) {
        expect(`${i}: ${(await s.get(`opens/a/${i}`))?.modRevision}`).toBe(`${i}: ${rev}`);
        expect(`${i}: ${(await s.get(`opens/b/${i}`))?.modRevision}`).toBe(`${i}: ${rev}`);
      }
      expect(await fullHistory(s)).toHaveLength(2 * n);
    } finally {
      await s.close();
    }
  });

  it("two processes opening and closing the store at once, with nobody else holding it open, both keep working", async () => {
    // without the write lock around open and close, both failed within a few
    // opens with LMDB's "No transaction to renew" (docs/kvstore.md)
    const path = join(dir, "openers");
    const spec = `embedded:${path}`;
    const seed = await openKvStore(spec);
    await seed.put("opener/probe", "1");
    await seed.close();
    const run = () =>
      new Promise<string>((resolve) => {
        const child = spawn(process.execPath, tsNodeArgs(fixture("opener.ts"), spec, "3000"), { stdio: ["ignore", "pipe", "pipe"] });
        let out = "";
        child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
        child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
        child.once("exit", (code) => resolve(`exit ${code}: ${out.trim()}`));
      });
    const results = await Promise.all([run(), run()]);
    for (const r of results) expect(r).toMatch(/^exit 0: opens \d+$/);
    // both really overlapped: each opened many times in the same 3 s
    for (const r of results) expect(Number(/opens (\d+)/.exec(r)![1])).toBeGreaterThan(20);
  });

  it("a lease kept alive by another process survives its TTL, and expires once that process is SIGKILLed", async () => {
    const path = join(dir, "lease");
    const spec = `embedded:${path}`;
    const s = await openKvStore(spec, { embedded: { maintenanceIntervalMs: 100 } });
    const child = spawn(process.execPath, tsNodeArgs(fixture("lease-holder.ts"), spec, "node/a", "2"), {
      stdio: ["ignore", "pipe", "inherit"],
    });
    try {
      const line = await new Promise<string>((resolve, reject) => {
        createInterface({ input: child.stdout! }).once("line", resolve);
        child.once("exit", (code) => reject(new Error(`lease holder exited with ${code}`)));
      });
      const [, leaseId, revText] = line.split(" ");
      const rev = Number(revText);
      // past its TTL the key is still there: the child's keep-alive works across processes
      // (a deliberate pause: the 2 s TTL must run out with nothing to wait on but time)
      await pause(3000);
      expect(await s.get("node/a")).toMatchObject({ lease: leaseId, modRevision: rev });
      const w = s.watch("node/", { fromRevision: rev + 1 });
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGKILL");
      await exited;
      // this process notices the expired lease and deletes its key, exactly once
      const c = new Collector(w);
      await c.until(rev + 1, "lease expiry after SIGKILL");
      expect(c.events.map((e) => [e.type, e.kv.key, e.revision])).toEqual([["delete", "node/a", rev + 1]]);
      expect(await s.get("node/a")).toBeUndefined();
      await w.close();
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await s.close();
    }
  });
});
