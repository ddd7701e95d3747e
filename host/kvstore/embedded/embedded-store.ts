/**
 * The embedded kvstore: a revisioned log in the style of k3s's kine, on LMDB.
 *
 * Layout (one LMDB environment in `<path>/`, shared by every process that
 * opens the path; LMDB serialises writers across processes with its own
 * lock and readers never block):
 *   meta  "rev" -> current revision; "compact" -> compacted revision; "leaseSeq" -> last lease ID
 *   kv    key -> current state (the index of current values)
 *   log   revision -> the events of that revision (append-only, one record
 *         per write: key, value, lease, create revision, previous state,
 *         deleted flag); compaction drops records below the compacted revision
 *   lease id -> { ttl, expiresAt }
 *   lkeys [leaseId, key] -> 1 (the keys bound to a lease)
 *
 * Every write is ONE LMDB transaction that reads the revision, checks its
 * conditions, appends the log record, updates the index and bumps the
 * revision, so revisions are gap-free and a crash leaves either all of it or
 * none of it (LMDB's copy-on-write commit). A write is acknowledged after its
 * commit is flushed to disk. Watchers tail the log: writes of this process
 * wake them at once; writes of other processes are found by polling the
 * revision (a single read, cheap on a memory map).
 *
 * One more lock of our own, `<path>/write.lock` (flock, so a SIGKILLed holder
 * frees it), around every open, commit and close of the environment:
 * - LMDB's environment open sets the shared "last committed transaction" from
 *   the meta page it read earlier, without the writer mutex (lmdb-js 3.5's
 *   mdb.c, mdb_env_open2: `me_txns->mti_txnid = meta.mm_txnid`). An open
 *   racing a commit can set it back by one; the next writer then begins from
 *   the older snapshot and overwrites the acknowledged commit, revision and all.
 * - Two processes opening and closing the store at once, with no third one
 *   holding it open, fail within a few opens with "No transaction to renew".
 * docs/kvstore.md has the reproductions. A process stopped (SIGSTOP) inside a
 * section stalls the others' commits, as one stopped inside LMDB's own writer
 * mutex always did; a killed one frees the lock.
 *
 * Leases expire by wall-clock time (one machine, one clock): any process
 * that notices an expired lease deletes its keys and the lease in one
 * transaction that re-checks the expiry inside, so it happens exactly once.
 */
import { open, type Database, type RootDatabase } from "lmdb";
import { chmodSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { ensurePrivateDir } from "../../sys/atomic-file.js";
import { openSectionLock, type SectionLock } from "../../sys/file-lock.js";
import { InvalidInputError, wrap } from "../../errors.js";
import {
  CompactedError,
  KvStoreError,
  type KeyValue,
  type KvStore,
  type Lease,
  type LeaseOptions,
  type ListOptions,
  type ListResult,
  type Lock,
  type LockOptions,
  type PutOptions,
  type Revision,
  type Txn,
  type TxnOp,
  type TxnOpResult,
  type TxnResult,
  type Watch,
  type WatchEvent,
  type WatchOptions,
} from "../store.js";
import type { EmbeddedOptions } from "../options.js";
import { WatchStream } from "../watch-stream.js";
import { TxnDerivedWrites } from "../txn-writes.js";
import { KeptLease } from "../lease-keeper.js";
import { acquireLock } from "../lock.js";
import { checkKey, checkListOptions, checkPrefix, checkRevision, checkTtl, checkTxn, checkValue, compareHolds } from "../validate.js";
import { listAtRevision } from "./list-at-revision.js";

/** A key's current state as stored in the index. */
interface StoredKv {
  v: string;
  c: number; // create revision
  m: number; // mod revision
  ver: number;
  l?: string; // lease
}

/** One record of the log. */
interface StoredEvent {
  k: string;
  d: boolean; // deleted
  kv: StoredKv; // the new state (after a delete: m = the delete's revision, v = "")
  p?: StoredKv; // the previous state
}

interface StoredLease {
  ttl: number;
  exp: number; // wall-clock ms
}

const DEFAULTS = { keepRevisions: 1000, pollIntervalMs: 25, maintenanceIntervalMs: 500, mapSize: 1024 * 1024 * 1024 };

export async function openEmbeddedKvStore(path: string, options: EmbeddedOptions = {}): Promise<KvStore> {
  if (typeof path !== "string" || path === "") throw new InvalidInputError("embedded kvstore: empty path");
  const keep = options.keepRevisions ?? DEFAULTS.keepRevisions;
  if (!Number.isInteger(keep) || keep < 1) throw new InvalidInputError(`embedded kvstore keepRevisions: must be a whole number >= 1, got ${keep}`);
  ensurePrivateDir(path, "kvstore directory");
  const writeLock = openSectionLock(join(path, "write.lock"), `embedded kvstore ${path}`);
  try {
    // the open and the named databases' creation (a write) both under the lock: see the header
    return writeLock.exclusive(() => {
      let root: RootDatabase;
      try {
        root = open({
          path: join(path, "db"),
          // commit without holding the writer lock during fsync; we still wait for the flush before acknowledging
          overlappingSync: true,
          mapSize: options.mapSize ?? DEFAULTS.mapSize,
          maxDbs: 8,
        });
      } catch (err) {
        throw wrap(`open embedded kvstore ${path}`, err);
      }
      // LMDB creates its files with the umask's modes; the store holds policy and addresses
      restrictModes(join(path, "db"));
      return new EmbeddedKvStore(path, root, writeLock, { ...DEFAULTS, ...options, keepRevisions: keep });
    });
  } catch (err) {
    writeLock.close();
    throw err;
  }
}

function restrictModes(dbDir: string): void {
  try {
    chmodSync(dbDir, 0o700);
    for (const f of readdirSync(dbDir)) chmodSync(join(dbDir, f), 0o600);
  } catch {
    /* another user's store we can use but not chmod: its modes are its owner's business */
  }
}

function toKeyValue(key: string, s: StoredKv): KeyValue {
  return { key, value: s.v, createRevision: s.c, modRevision: s.m, version: s.ver, lease: s.l };
}

function toEvent(rev: number, e: StoredEvent, withPrevKv: boolean): WatchEvent {
  const kv = toKeyValue(e.k, e.kv);
  // the log holds the previous state anyway; it is still only handed out when asked for, as etcd does
  return { type: e.d ? "delete" : "put", kv, prevKv: withPrevKv && e.p ? toKeyValue(e.k, e.p) : undefined, revision: rev };
}

interface EmbeddedWatcher {
  stream: WatchStream;
  prefix: string;
  next: number; // next revision to deliver
  prevKv: boolean;
}

class EmbeddedKvStore extends TxnDerivedWrites implements KvStore {
  readonly backend = "embedded" as const;
  readonly location: string;
  private readonly meta: Database<number, string>;
  private readonly kv: Database<StoredKv, string>;
  private readonly log: Database<StoredEvent[], number>;
  private readonly leases: Database<StoredLease, string>;
  private readonly lkeys: Database<number, [string, string]>;
  private readonly watchers = new Set<EmbeddedWatcher>();
  private readonly keptLeases = new Set<KeptLease>();
  private pollTimer: NodeJS.Timeout | undefined;
  private maintenanceTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    path: string,
    private readonly root: RootDatabase,
    /** Held around every commit, so no process opens the store mid-commit (see the header). */
    private readonly writeLock: SectionLock,
    private readonly opts: Required<EmbeddedOptions>,
  ) {
    super();
    this.location = path;
    this.meta = root.openDB({ name: "meta" });
    this.kv = root.openDB({ name: "kv" });
    this.log = root.openDB({ name: "log" });
    this.leases = root.openDB({ name: "lease" });
    this.lkeys = root.openDB({ name: "lkeys" });
    this.scheduleMaintenance();
  }

  // ------------------------------------------------------------ plumbing

  private ensureOpen(what: string): void {
    if (this.closed) throw new KvStoreError("KVSTORE_CLOSED", `embedded kvstore ${this.location}: ${what} after close`);
  }

  private currentRev(): number {
    return this.meta.get("rev") ?? 0;
  }

  private compactRev(): number {
    return this.meta.get("compact") ?? 0;
  }

  private pendingWrites: Array<{ what: string; fn: () => unknown; resolve: (v: unknown) => void; reject: (e: unknown) => void }> = [];

  /**
   * Runs `fn` inside a write transaction and resolves once that commit is
   * flushed to disk. Group commit: every write queued in the same turn of the
   * event loop runs in ONE LMDB transaction and shares one flush, each still
   * with its own revision (etcd batches its fsyncs the same way). Each `fn`
   * must throw only before it writes anything (every caller checks first,
   * then writes), so a refused write never leaves part of itself in the batch.
   */
  private write<T>(what: string, fn: () => T): Promise<T> {
    this.ensureOpen(what);
    return new Promise<T>((resolve, reject) => {
      this.pendingWrites.push({ what, fn, resolve: resolve as (v: unknown) => void, reject });
      if (this.pendingWrites.length === 1) setImmediate(() => void this.commitPending());
    });
  }

  private async commitPending(): Promise<void> {
    const batch = this.pendingWrites.splice(0);
    if (batch.length === 0) return;
    const outcomes: Array<{ ok: true; value: unknown } | { ok: false; err: unknown }> = [];
    try {
      this.writeLock.exclusive(() =>
        this.root.transactionSync(() => {
          for (const item of batch) {
            try {
              outcomes.push({ ok: true, value: item.fn() });
            } catch (err) {
              outcomes.push({ ok: false, err });
            }
          }
        }),
      );
      // committed = visible to every process (other processes' watchers see it now too): wake ours
      this.pollSoon();
      await this.root.flushed;
    } catch (err) {
      for (const item of batch) {
        item.reject(new KvStoreError("KVSTORE_UNAVAILABLE", `embedded kvstore ${this.location}: ${item.what}: ${(err as Error).message}`, { cause: err }));
      }
      return;
    }
    batch.forEach((item, i) => {
      const o = outcomes[i]!;
      if (o.ok) item.resolve(o.value);
      else item.reject(o.err);
    });
  }

  /** Reads see the newest commit of ANY process (LMDB otherwise reuses a read snapshot within an event turn). */
  private fresh(): void {
    this.root.resetReadTxn();
  }

  /** Appends the events of one new revision: updates the index, the lease sets and the log. Inside a write txn. */
  private append(rev: number, events: StoredEvent[]): void {
    for (const e of events) {
      const oldLease = e.p?.l;
      if (e.d) {
        this.kv.removeSync(e.k);
        if (oldLease) this.lkeys.removeSync([oldLease, e.k]);
      } else {
        this.kv.putSync(e.k, e.kv);
        if (oldLease && oldLease !== e.kv.l) this.lkeys.removeSync([oldLease, e.k]);
        if (e.kv.l) this.lkeys.putSync([e.kv.l, e.k], 1);
      }
    }
    this.log.putSync(rev, events);
    this.meta.putSync("rev", rev);
  }

  private checkLeaseLive(id: string, now: number): void {
    const l = this.leases.get(id);
    if (l === undefined || l.exp <= now) throw new KvStoreError("KVSTORE_LEASE_NOT_FOUND", `embedded kvstore: lease ${id} not found (expired or revoked)`);
  }

  // ------------------------------------------------------------ reads

  async get(key: string): Promise<KeyValue | undefined> {
    checkKey(key);
    this.ensureOpen("get");
    this.fresh();
    const s = this.kv.get(key);
    return s ? toKeyValue(key, s) : undefined;
  }

  private listNow(prefix: string, limit?: number): KeyValue[] {
    const out: KeyValue[] = [];
    for (const { key, value } of this.kv.getRange({ start: prefix })) {
      if (!key.startsWith(prefix)) break;
      out.push(toKeyValue(key, value));
      if (limit !== undefined && out.length >= limit) break;
    }
    return out;
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListResult> {
    checkPrefix(prefix);
    checkListOptions(prefix, options);
    this.ensureOpen("list");
    this.fresh();
    // one synchronous block = one read snapshot: the keys, the log and the revisions agree
    const current = this.currentRev();
    const revision = options.revision ?? current;
    if (revision > current) throw new InvalidInputError(`embedded kvstore: list ${prefix} at revision ${revision}: a future revision (current ${current})`);
    const compacted = this.compactRev();
    if (revision < compacted) throw new CompactedError(revision, compacted, `embedded kvstore list ${prefix}`);
    const page = listAtRevision(
      {
        index: (start) => this.kv.getRange({ start }),
        log: (from, to) => this.log.getRange({ start: from, end: to + 1 }),
      },
      { prefix, startAfter: options.startAfter, limit: options.limit, revision, current },
    );
    return { kvs: page.entries.map((e) => toKeyValue(e.key, e.state)), revision, more: page.more };
  }

  async revision(): Promise<Revision> {
    this.ensureOpen("revision");
    this.fresh();
    return this.currentRev();
  }

  async compactedRevision(): Promise<Revision> {
    this.ensureOpen("compactedRevision");
    this.fresh();
    return this.compactRev();
  }

  // ------------------------------------------------------------ writes

  async put(key: string, value: string, options: PutOptions = {}): Promise<Revision> {
    const r = await this.txn({ compare: [], success: [{ type: "put", key, value, lease: options.lease }] });
    return r.revision;
  }

  async txn(txn: Txn): Promise<TxnResult> {
    checkTxn(txn);
    return this.write("txn", () => this.runTxn(txn));
  }

  /** The body of every write. Phase 1 computes (and may throw); phase 2 writes. */
  private runTxn(txn: Txn): TxnResult {
    const now = Date.now();
    const rev = this.currentRev();
    const state = (key: string): StoredKv | undefined => this.kv.get(key);
    const succeeded = txn.compare.every((c) => {
      const s = state(c.key);
      return compareHolds(
        { createRevision: s?.c ?? 0, modRevision: s?.m ?? 0, version: s?.ver ?? 0, value: s?.v, lease: s?.l },
        c.target,
        c.op,
        c.value,
      );
    });
    const ops: readonly TxnOp[] = succeeded ? txn.success : (txn.failure ?? []);
    const newRev = rev + 1;
    // writes of this txn, visible to its later reads (etcd applies ops in order)
    const overlay = new Map<string, StoredKv | null>();
    const look = (key: string): StoredKv | undefined => {
      const o = overlay.get(key);
      return o === null ? undefined : (o ?? state(key));
    };
    const events: StoredEvent[] = [];
    const results: TxnOpResult[] = [];
    for (const op of ops) {
      switch (op.type) {
        case "get": {
          const s = look(op.key);
          results.push({ type: "get", kv: s ? toKeyValue(op.key, s) : undefined });
          break;
        }
        case "list": {
          const merged = new Map<string, StoredKv>();
          for (const kv of this.listNow(op.prefix)) {
            merged.set(kv.key, { v: kv.value, c: kv.createRevision, m: kv.modRevision, ver: kv.version, l: kv.lease });
          }
          for (const [k, s] of overlay) if (k.startsWith(op.prefix)) s === null ? merged.delete(k) : merged.set(k, s);
          const kvs = [...merged.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, s]) => toKeyValue(k, s));
          results.push({ type: "list", kvs });
          break;
        }
        case "put": {
          if (op.lease !== undefined && op.lease !== "" && op.lease !== "0") this.checkLeaseLive(op.lease, now);
          const prev = look(op.key);
          const lease = op.lease !== undefined && op.lease !== "" && op.lease !== "0" ? op.lease : undefined;
          const next: StoredKv = { v: op.value, c: prev ? prev.c : newRev, m: newRev, ver: prev ? prev.ver + 1 : 1 };
          if (lease) next.l = lease;
          overlay.set(op.key, next);
          events.push({ k: op.key, d: false, kv: next, p: prev });
          results.push({ type: "put" });
          break;
        }
        case "delete": {
          const prev = look(op.key);
          if (prev) {
            overlay.set(op.key, null);
            events.push({ k: op.key, d: true, kv: deletedState(prev, newRev), p: prev });
          }
          results.push({ type: "delete", deleted: prev ? 1 : 0 });
          break;
        }
        case "deletePrefix": {
          let n = 0;
          for (const kv of this.listNow(op.prefix)) {
            const prev = look(kv.key);
            if (!prev) continue;
            overlay.set(kv.key, null);
            events.push({ k: kv.key, d: true, kv: deletedState(prev, newRev), p: prev });
            n++;
          }
          results.push({ type: "deletePrefix", deleted: n });
          break;
        }
      }
    }
    if (events.length === 0) return { succeeded, revision: rev, results };
    this.append(newRev, events);
    return { succeeded, revision: newRev, results };
  }

  // ------------------------------------------------------------ leases

  async grantLease(ttlSeconds: number, options: LeaseOptions = {}): Promise<Lease> {
    const ttl = checkTtl(ttlSeconds);
    const id = await this.write("grant lease", () => {
      const seq = (this.meta.get("leaseSeq") ?? 0) + 1;
      this.meta.putSync("leaseSeq", seq);
      const leaseId = String(seq);
      this.leases.putSync(leaseId, { ttl, exp: Date.now() + ttl * 1000 });
      return leaseId;
    });
    const lease = new KeptLease(
      id,
      ttl,
      { refresh: (leaseId) => this.refreshLease(leaseId), revoke: (leaseId) => this.revokeLease(leaseId) },
      options.autoKeepAlive ?? true,
      (l) => this.keptLeases.delete(l),
    );
    this.keptLeases.add(lease);
    return lease;
  }

  private async refreshLease(id: string): Promise<void> {
    const expired = await this.write("keep lease alive", () => {
      const now = Date.now();
      const l = this.leases.get(id);
      if (l === undefined) return true;
      if (l.exp <= now) {
        // expired but not yet collected: collect it now, exactly as the sweeper would
        this.expireLeaseNow(id);
        return true;
      }
      this.leases.putSync(id, { ttl: l.ttl, exp: now + l.ttl * 1000 });
      return false;
    });
    if (expired) throw new KvStoreError("KVSTORE_LEASE_NOT_FOUND", `embedded kvstore: lease ${id} not found (expired or revoked)`);
  }

  private async revokeLease(id: string): Promise<void> {
    await this.write("revoke lease", () => {
      if (this.leases.get(id) !== undefined) this.expireLeaseNow(id);
    });
  }

  /** Deletes the lease and its keys in ONE new revision (none if it had no keys). Inside a write txn. */
  private expireLeaseNow(id: string): void {
    const newRev = this.currentRev() + 1;
    const events: StoredEvent[] = [];
    for (const { key } of this.lkeys.getRange({ start: [id] })) {
      if (key[0] !== id) break;
      const prev = this.kv.get(key[1]);
      if (prev && prev.l === id) events.push({ k: key[1], d: true, kv: deletedState(prev, newRev), p: prev });
    }
    for (const e of events) this.lkeys.removeSync([id, e.k]);
    this.leases.removeSync(id);
    if (events.length > 0) this.append(newRev, events);
  }

  async lock(name: string, lease: Lease, options?: LockOptions): Promise<Lock> {
    this.ensureOpen("lock");
    return acquireLock(this, name, lease, options);
  }

  // ------------------------------------------------------------ compaction and maintenance

  async compact(revision: Revision): Promise<void> {
    checkRevision(revision, "compact revision");
    this.ensureOpen("compact");
    this.fresh();
    if (revision > this.currentRev()) {
      throw new InvalidInputError(`embedded kvstore: compact revision ${revision} is in the future (current ${this.currentRev()})`);
    }
    await this.compactTo(revision);
  }

  /** Drops log records below `revision` in bounded batches, so the writer lock is never held long. */
  private async compactTo(revision: number): Promise<void> {
    // the compacted revision moves first: a watcher that then misses records knows why
    await this.write("compact", () => {
      if (revision > this.compactRev()) this.meta.putSync("compact", revision);
    });
    const removeBatch = (): boolean => {
      // keys first, removal after: never modify under an open cursor
      const keys = [...this.log.getKeys({ end: this.compactRev(), limit: 5000 })];
      for (const key of keys) this.log.removeSync(key);
      return keys.length === 5000;
    };
    while (await this.write("compact", removeBatch)) {
      /* more records below the compacted revision */
    }
  }

  private scheduleMaintenance(): void {
    if (this.closed) return;
    const base = this.opts.maintenanceIntervalMs;
    this.maintenanceTimer = setTimeout(() => void this.maintain(), base * (0.75 + Math.random() * 0.5));
    this.maintenanceTimer.unref();
  }

  /** Expires leases and compacts; reads first so idle processes never take the writer lock. */
  private async maintain(): Promise<void> {
    try {
      this.fresh();
      const now = Date.now();
      const expired: string[] = [];
      for (const { key, value } of this.leases.getRange({})) if (value.exp <= now) expired.push(key);
      for (const id of expired) {
        await this.write("expire lease", () => {
          const l = this.leases.get(id);
          if (l !== undefined && l.exp <= Date.now()) this.expireLeaseNow(id);
        });
      }
      const rev = this.currentRev();
      const keep = this.opts.keepRevisions;
      // hysteresis: compact in steps of a tenth of the window, not on every write
      if (rev - this.compactRev() > keep + Math.max(1, Math.floor(keep / 10))) await this.compactTo(rev - keep);
    } catch (err) {
      if (!this.closed) console.warn(`embedded kvstore ${this.location}: maintenance: ${(err as Error).message}`);
    } finally {
      this.scheduleMaintenance();
    }
  }

  // ------------------------------------------------------------ watch

  watch(prefix: string, options: WatchOptions = {}): Watch {
    checkPrefix(prefix);
    this.ensureOpen("watch");
    this.fresh();
    const current = this.currentRev();
    const from = options.fromRevision === undefined || options.fromRevision === 0 ? current + 1 : checkRevision(options.fromRevision, "watch fromRevision");
    const watcher: EmbeddedWatcher = {
      prefix,
      next: from,
      prevKv: options.prevKv === true,
      stream: new WatchStream(prefix, from, () => {
        this.watchers.delete(watcher);
        this.updatePollTimer();
      }),
    };
    this.watchers.add(watcher);
    this.updatePollTimer();
    watcher.stream.setReady();
    this.pollSoon();
    return watcher.stream;
  }

  private pollScheduled = false;

  /** Delivers new log records to watchers on the next tick (batched: one read for many writes). */
  private pollSoon(): void {
    if (this.pollScheduled || this.watchers.size === 0) return;
    this.pollScheduled = true;
    setImmediate(() => {
      this.pollScheduled = false;
      this.poll();
    });
  }

  private updatePollTimer(): void {
    if (this.watchers.size > 0 && this.pollTimer === undefined && !this.closed) {
      // ref'd on purpose: a process whose only work is a watch (membrane kvstore watch) stays alive
      this.pollTimer = setInterval(() => this.poll(), this.opts.pollIntervalMs);
    } else if ((this.watchers.size === 0 || this.closed) && this.pollTimer !== undefined) {
      clearInterval(this.pollTimer);
      this.pollTimer = undefined;
    }
  }

  private poll(): void {
    if (this.closed || this.watchers.size === 0) return;
    this.fresh();
    // one synchronous block: revision, compacted revision and log records come from one snapshot
    const rev = this.currentRev();
    const compacted = this.compactRev();
    for (const w of [...this.watchers]) {
      if (w.next > rev) continue;
      if (w.next < compacted) {
        w.stream.fail(new CompactedError(w.next, compacted, `embedded kvstore watch ${w.prefix}`));
        continue;
      }
      for (const { key, value } of this.log.getRange({ start: w.next, end: rev + 1 })) {
        for (const e of value) if (e.k.startsWith(w.prefix)) w.stream.push(toEvent(key, e, w.prevKv));
      }
      w.next = rev + 1;
    }
  }

  // ------------------------------------------------------------ close

  async close(): Promise<void> {
    if (this.closed) return;
    // writes already asked for are committed, not dropped
    await this.commitPending();
    for (const l of [...this.keptLeases]) l.release();
    const streams = [...this.watchers].map((w) => w.stream);
    this.closed = true;
    for (const s of streams) await s.close();
    this.watchers.clear();
    this.updatePollTimer();
    if (this.maintenanceTimer) clearTimeout(this.maintenanceTimer);
    await this.root.flushed;
    // closing races other processes' opens as opening races commits (see the header)
    await this.writeLock.exclusiveAsync(() => this.root.close());
    this.writeLock.close();
  }
}

/** A deleted key's state in its event, shaped as etcd sends it (the previous state travels in `p`). */
function deletedState(prev: StoredKv, rev: number): StoredKv {
  void prev;
  return { v: "", c: 0, m: rev, ver: 0 };
}
