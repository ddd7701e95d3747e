/**
 * `membrane operator`: one active instance per cluster. Each instance takes
 * a lease and waits for the leader lock (host/kvstore Lock, fenced by the
 * lock key's create revision); a standby is simply an instance waiting for
 * it. When the leader dies its lease expires after one TTL, the lock key
 * goes with it, and the next waiter takes over within the next keep-alive
 * round, well inside two TTLs. The leader:
 * - lists then watches the stored manifests, the node keys and the identity
 *   node keys, and turns them into slim records (reconciler.ts), writing only
 *   changes, each write guarded by the lock;
 * - collects identities no node uses (identity-gc.ts) every interval;
 * - optionally follows a directory of manifest files (--watch-dir), applying
 *   them as `membrane apply` would (a directory with any bad file writes
 *   nothing) and deleting what it applied from there when a file goes away;
 * - retries failed reads and writes with backoff, re-listing what it follows.
 * It allocates nothing: identities are the agents' (convert.ts says who
 * writes what). Losing the lock ends run() with LeadershipLostError.
 */
import { watch as watchFs, type FSWatcher } from "node:fs";
import { MembraneError } from "../errors.js";
import { Backoff } from "../kvstore/backoff.js";
import { collectIdentities } from "../kvstore/identity-gc.js";
import { DEFAULT_CLUSTER, keys } from "../kvstore/keys.js";
import { CompactedError, type KvStore, type Lease, type Lock, type Watch } from "../kvstore/store.js";
import { applyManifests, deleteManifests } from "./apply.js";
import { MANIFEST_ROOT, manifestKey } from "./manifest-store.js";
import { readManifests } from "./manifests/read.js";
import type { Manifest } from "./manifests/kinds.js";
import { agentNodesPrefix, LeadershipLostError, Reconciler, type ReconcilerStats } from "./reconciler.js";

export { LeadershipLostError } from "./reconciler.js";

/** The leader lock: one key, bound to the leader's lease. */
export const OPERATOR_LOCK = "membrane/operator/v1/leader";
export const DEFAULT_LEASE_TTL_SECONDS = 15;
export const DEFAULT_IDENTITY_GC_INTERVAL_MS = 60_000;

export interface OperatorOptions {
  /** Lease TTL in seconds: a dead leader is replaced within two of these. Default 15. */
  leaseTtlSeconds?: number;
  /** Identity GC period in ms (default 60 s); 0 turns it off. */
  identityGcIntervalMs?: number;
  /** A directory of manifest files to follow as desired state. */
  watchDir?: string;
  cluster?: string;
  /** One line per action. */
  log?: (line: string) => void;
  /** Stops the operator (releasing the lock, so a standby takes over at once). */
  signal?: AbortSignal;
  /** Told when this instance becomes the leader. */
  onLeading?: (lock: Lock) => void;
  /** Told after each reconcile round that wrote something or ran the initial sync (tests wait on it). */
  onSynced?: (stats: ReconcilerStats) => void;
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new MembraneError("ABORTED", "stopped");
}

/** Runs until `signal` aborts (resolves) or leadership is lost (rejects with LeadershipLostError). */
export async function runOperator(store: KvStore, options: OperatorOptions = {}): Promise<void> {
  const log = options.log ?? ((line: string) => process.stdout.write(`${new Date().toISOString()} operator: ${line}\n`));
  const ttl = options.leaseTtlSeconds ?? DEFAULT_LEASE_TTL_SECONDS;
  const outer = options.signal ?? new AbortController().signal;
  const lease = await store.grantLease(ttl);
  log(`lease ${lease.id} (ttl ${ttl} s); waiting for the leader lock ${OPERATOR_LOCK}`);
  let lock: Lock;
  try {
    lock = await store.lock(OPERATOR_LOCK, lease, { signal: outer });
  } catch (err) {
    await lease.revoke().catch(() => undefined);
    if (outer.aborted) return;
    throw err;
  }
  log(`leading (fencing token ${lock.fencingToken})`);
  options.onLeading?.(lock);

  const stop = new AbortController();
  let lost: LeadershipLostError | undefined;
  const lose = (err: LeadershipLostError) => {
    lost ??= err;
    stop.abort(err);
  };
  lease.onLost((err) => lose(new LeadershipLostError(`operator lease ${lease.id} lost: ${err.message}`)));
  const onOuter = () => stop.abort(abortReason(outer));
  if (outer.aborted) onOuter();
  outer.addEventListener("abort", onOuter, { once: true });
  try {
    await lead(store, lease, lock, stop.signal, log, options, lose);
  } finally {
    outer.removeEventListener("abort", onOuter);
    if (!lost) {
      await lock.release().catch(() => undefined);
      await lease.revoke().catch(() => undefined);
      log("stopped; leader lock released");
    } else {
      lease.release();
    }
  }
  if (lost) throw lost;
}

async function lead(
  store: KvStore,
  lease: Lease,
  lock: Lock,
  signal: AbortSignal,
  log: (line: string) => void,
  options: OperatorOptions,
  lose: (err: LeadershipLostError) => void,
): Promise<void> {
  const cluster = options.cluster ?? DEFAULT_CLUSTER;
  const reconciler = new Reconciler(store, lock, log, cluster);
  const followed = [MANIFEST_ROOT, keys.nodes(cluster), keys.identityValues()];
  const backoff = new Backoff({ minMs: 200, maxMs: 10_000 });

  let wake: (() => void) | undefined;
  const kick = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  signal.addEventListener("abort", kick, { once: true });

  // List everything first, so the first sync sees a whole picture.
  const revisions = new Map<string, number>();
  for (;;) {
    try {
      reconciler.seedAgentNodes((await store.list(agentNodesPrefix(cluster))).kvs);
      for (const prefix of followed) {
        const list = await store.list(prefix);
        reconciler.reset(prefix, list.kvs);
        revisions.set(prefix, list.revision);
      }
      break;
    } catch (err) {
      if (signal.aborted) return;
      log(`initial list failed (${(err as Error).message}); retrying`);
      await backoff.wait(signal).catch(() => undefined);
      if (signal.aborted) return;
    }
  }

  const tasks: Promise<void>[] = followed.map((prefix) =>
    follow(store, prefix, revisions.get(prefix)! + 1, reconciler, signal, log, kick),
  );
  if ((options.identityGcIntervalMs ?? DEFAULT_IDENTITY_GC_INTERVAL_MS) > 0) {
    tasks.push(identityGc(store, lease, lock, signal, log, options.identityGcIntervalMs ?? DEFAULT_IDENTITY_GC_INTERVAL_MS));
  }
  let dirWatcher: FSWatcher | undefined;
  if (options.watchDir !== undefined) dirWatcher = followDirectory(store, lock, options.watchDir, signal, log);

  let needSync = true;
  try {
    while (!signal.aborted) {
      if (!needSync && !reconciler.pending) {
        await new Promise<void>((resolve) => (wake = resolve));
        continue;
      }
      try {
        const written = needSync ? await reconciler.fullSync() : await reconciler.step();
        if (needSync || written > 0) options.onSynced?.({ ...reconciler.stats });
        needSync = false;
        backoff.reset();
      } catch (err) {
        if (err instanceof LeadershipLostError) {
          lose(err);
          break;
        }
        const wait = backoff.next();
        log(`write failed (${(err as Error).message}); full resync in ${Math.round(wait)} ms`);
        needSync = true;
        await sleep(wait, signal);
      }
    }
  } finally {
    dirWatcher?.close();
    kick();
    await Promise.allSettled(tasks);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => (clearTimeout(t), resolve()), { once: true });
  });
}

/** Watch one prefix from `from`; when the watch fails, back off, re-list (events for the difference) and watch again. */
async function follow(
  store: KvStore,
  prefix: string,
  from: number,
  reconciler: Reconciler,
  signal: AbortSignal,
  log: (line: string) => void,
  kick: () => void,
): Promise<void> {
  const backoff = new Backoff({ minMs: 200, maxMs: 10_000 });
  while (!signal.aborted) {
    let watch: Watch | undefined;
    const close = () => void watch?.close();
    signal.addEventListener("abort", close, { once: true });
    try {
      watch = store.watch(prefix, { fromRevision: from });
      for await (const ev of watch) {
        reconciler.event(prefix, ev);
        from = ev.revision + 1;
        backoff.reset();
        kick();
      }
      if (signal.aborted) return;
      throw new MembraneError("KVSTORE_UNAVAILABLE", "watch ended");
    } catch (err) {
      if (signal.aborted) return;
      const wait = backoff.next();
      log(`watch ${prefix} ${err instanceof CompactedError ? "fell behind compaction" : `failed (${(err as Error).message})`}; re-listing in ${Math.round(wait)} ms`);
      await sleep(wait, signal);
      if (signal.aborted) return;
      try {
        const list = await store.list(prefix);
        reconciler.reset(prefix, list.kvs);
        from = list.revision + 1;
        kick();
      } catch (listErr) {
        log(`re-list ${prefix} failed (${(listErr as Error).message})`);
      }
    } finally {
      signal.removeEventListener("abort", close);
      await watch?.close().catch(() => undefined);
    }
  }
}

async function identityGc(store: KvStore, lease: Lease, lock: Lock, signal: AbortSignal, log: (line: string) => void, intervalMs: number): Promise<void> {
  while (!signal.aborted) {
    await sleep(intervalMs, signal);
    if (signal.aborted) return;
    try {
      // The collector's deletes are fenced by each label set's lock; checking ours first keeps a deposed leader from even trying.
      if (!(await lock.isHeld())) return;
      const result = await collectIdentities(store, lease);
      for (const id of result.deleted) log(`identity gc: deleted identity ${id} (no node uses it)`);
      for (const key of result.unreadable) log(`identity gc: left unreadable key ${key} alone`);
    } catch (err) {
      if (!signal.aborted) log(`identity gc failed (${(err as Error).message}); next round in ${intervalMs} ms`);
    }
  }
}

/**
 * --watch-dir: the directory is applied whole on start and on every change
 * of its files; objects that disappear from it (since this leader applied
 * them) are deleted. A directory with a bad file is logged and writes nothing.
 */
function followDirectory(store: KvStore, lock: Lock, dir: string, signal: AbortSignal, log: (line: string) => void): FSWatcher | undefined {
  let applied = new Map<string, Manifest>();
  let running = false;
  let again = false;
  const sync = async (): Promise<void> => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      do {
        again = false;
        let manifests: Manifest[];
        try {
          manifests = readManifests(dir);
        } catch (err) {
          log(`watch-dir ${dir}: not applied: ${(err as Error).message}`);
          continue;
        }
        try {
          const now = new Map(manifests.map((m) => [manifestKey(m), m]));
          const gone = [...applied].filter(([k]) => !now.has(k)).map(([, m]) => m);
          const put = await applyManifests(store, manifests, [lock.guard()]);
          const del = await deleteManifests(store, gone, [lock.guard()]);
          for (const o of [...put.objects, ...del.objects]) if (o.outcome !== "unchanged" && o.outcome !== "not found") log(`watch-dir: ${o.id} ${o.outcome}`);
          applied = now;
        } catch (err) {
          log(`watch-dir ${dir}: ${(err as Error).message}`);
        }
      } while (again && !signal.aborted);
    } finally {
      running = false;
    }
  };
  void sync();
  try {
    const watcher = watchFs(dir, () => void sync());
    watcher.on("error", (err) => log(`watch-dir ${dir}: ${err.message}`));
    return watcher;
  } catch (err) {
    log(`watch-dir ${dir}: cannot watch (${(err as Error).message}); applied once`);
    return undefined;
  }
}
