/**
 * Cluster-wide security identities on the kvstore, Cilium 1.5's scheme
 * (pkg/kvstore/allocator):
 * - master key `identities/v1/id/<ID>` -> the label set; created only if
 *   absent, with no lease (it outlives any one node);
 * - per node key `identities/v1/value/<labels>/<node>` -> the ID, bound to the
 *   node's lease (a dead node's keys vanish with its lease);
 * - a lock per label set (`identities/v1/locks/<labels>`), fenced by its
 *   lease: two nodes allocating the same labels agree on one ID;
 * - a local reference count: repeated use of a label set on this node costs
 *   no kvstore operation;
 * - races (another node took the ID we picked, our lock was lost) are retried
 *   up to 16 times with backoff starting at 20 ms.
 * Release deletes this node's key on the last local use. Masters no node key
 * references are deleted by one operator (identity-gc.ts); agents re-create
 * masters they still use (resync()).
 *
 * Identities from 256 up to 65535; 1..255 are reserved and CIDR identities
 * are node-local (host/identity/allocator.ts), neither touches the kvstore.
 */
import { MembraneError, wrap } from "../errors.js";
import { MAX_ENDPOINT_IDENTITY, MIN_ENDPOINT_IDENTITY } from "../identity/allocator.js";
import { LabelSet } from "../identity/labels.js";
import { Backoff } from "./backoff.js";
import { systemClock, type Clock, type Random } from "./clock.js";
import { keys } from "./keys.js";
import { listPages } from "./paged-list.js";
import { decodeRecord } from "./records/codec.js";
import type { IdentityMasterRecord, IdentityValueRecord } from "./records/identity.js";
import type { KvStore, Lease } from "./store.js";

export const IDENTITY_ALLOCATION_ATTEMPTS = 16;
export const IDENTITY_RACE_BACKOFF_MS = 20;

export interface ClusterIdentityOptions {
  /** This node's name: the last segment of its value keys. */
  node: string;
  /** This node's lease: its value keys and its identity locks are bound to it. */
  lease: Lease;
  /** Range of IDs to hand out (default 256..65535). */
  minId?: number;
  maxId?: number;
  maxAttempts?: number;
  clock?: Clock;
  random?: Random;
  /** Lock wait limit per attempt (default 30 s). */
  lockTimeoutMs?: number;
  /**
   * The identity masters this node already mirrors from its watch (id and
   * label set id), or undefined while that mirror has not synced. With it, a
   * new allocation reads no list of every master: the free ID is picked from
   * what the watch has delivered, as Cilium 1.5's allocator picks from its
   * watched cache. Create-only still decides a race for an ID the watch had
   * not delivered yet (a retry). Without it, the masters are listed in pages.
   */
  knownMasters?: () => Iterable<KnownMaster> | undefined;
}

export interface KnownMaster {
  id: number;
  /** The label set's id (LabelSet.id). */
  labels: string;
}

/**
 * Keys per page when masters are listed: 65,280 masters at most, about 100
 * bytes each; a page of 500 is a small reply even for an etcd busy serving
 * 1,000 watchers, where one list of 2,000 masters missed its 5 s deadline
 * again and again (docs/scale.md).
 */
export const IDENTITY_MASTER_PAGE_SIZE = 500;

export interface ClusterAllocation {
  id: number;
  labels: LabelSet;
  /** True when this call created the master key (the ID is new to the cluster). */
  created: boolean;
}

interface Held {
  id: number;
  labels: LabelSet;
  refs: number;
}

/** An ID already bound to another label set: the store is inconsistent (e.g. a lease expired during a partition). */
export class IdentityConflictError extends MembraneError {
  constructor(message: string) {
    super("IDENTITY_CONFLICT", message);
  }
}

/** A lost race: retried by the allocation loop. */
class RaceError extends Error {}

export function masterValue(labels: LabelSet): string {
  return JSON.stringify({ labels: labels.toStrings() } satisfies IdentityMasterRecord);
}

/** A master key's ID and label set id, or undefined for a key that does not read as one. */
function readMaster(key: string, value: string): { id: number; labels: string } | undefined {
  try {
    const decoded = decodeRecord(key, value);
    if (decoded.type !== "identity-master") return undefined;
    return { id: Number(decoded.key.path[1]), labels: LabelSet.parse((decoded.record as IdentityMasterRecord).labels).id };
  } catch {
    return undefined;
  }
}

export class ClusterIdentityAllocator {
  private readonly held = new Map<string, Held>();
  /** Per label set, the tail of the queue of local operations on it (allocate/release never interleave for one set). */
  private readonly queues = new Map<string, Promise<unknown>>();
  private readonly minId: number;
  private readonly maxId: number;
  private readonly clock: Clock;
  private readonly random: Random;
  /** Counts kvstore operations issued, so tests can check that a local hit costs none. */
  kvOperations = 0;

  constructor(private readonly store: KvStore, private readonly options: ClusterIdentityOptions) {
    this.minId = options.minId ?? MIN_ENDPOINT_IDENTITY;
    this.maxId = options.maxId ?? MAX_ENDPOINT_IDENTITY;
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? Math.random;
  }

  private serial<T>(labels: LabelSet, fn: () => Promise<T>): Promise<T> {
    const tail = this.queues.get(labels.id) ?? Promise.resolve();
    const run = tail.then(fn, fn);
    const settled = run.catch(() => undefined);
    this.queues.set(labels.id, settled);
    void settled.then(() => {
      if (this.queues.get(labels.id) === settled) this.queues.delete(labels.id);
    });
    return run;
  }

  /** One more reference to the cluster-wide identity of `labels`. */
  allocate(labels: LabelSet): Promise<ClusterAllocation> {
    if (labels.hasSource("reserved") || labels.hasSource("cidr")) {
      return Promise.reject(new MembraneError("INVALID_INPUT", `labels ${labels.id}: reserved and CIDR identities are node-local, not allocated on the kvstore`));
    }
    return this.serial(labels, async () => {
      const local = this.held.get(labels.id);
      if (local) {
        local.refs++;
        return { id: local.id, labels, created: false };
      }
      const result = await this.allocateInStore(labels);
      this.held.set(labels.id, { id: result.id, labels, refs: 1 });
      return result;
    });
  }

  /** Drops one reference; on the last, deletes this node's key. Returns true when the node key was deleted. */
  release(labels: LabelSet): Promise<boolean> {
    return this.serial(labels, async () => {
      const local = this.held.get(labels.id);
      if (!local) return false;
      if (--local.refs > 0) return false;
      this.held.delete(labels.id);
      try {
        this.kvOperations++;
        await this.store.delete(keys.identityValue(labels.id, this.options.node));
      } catch (err) {
        throw wrap(`release identity ${local.id} (${labels.id})`, err);
      }
      return true;
    });
  }

  references(labels: LabelSet): number {
    return this.held.get(labels.id)?.refs ?? 0;
  }

  /** Identities this node holds, by label set id. */
  holdings(): Map<string, { id: number; refs: number }> {
    return new Map([...this.held].map(([k, h]) => [k, { id: h.id, refs: h.refs }]));
  }

  private async allocateInStore(labels: LabelSet): Promise<ClusterAllocation> {
    const maxAttempts = this.options.maxAttempts ?? IDENTITY_ALLOCATION_ATTEMPTS;
    const backoff = new Backoff({ minMs: IDENTITY_RACE_BACKOFF_MS, maxMs: 2000, random: this.random }, this.clock);
    let last: unknown;
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      try {
        return await this.attempt(labels);
      } catch (err) {
        if (!(err instanceof RaceError)) throw wrap(`allocate identity for ${labels.id}`, err);
        last = err;
        await backoff.wait();
      }
    }
    throw new MembraneError(
      "IDENTITY_ALLOCATION_FAILED",
      `allocate identity for ${labels.id}: lost ${maxAttempts} races in a row (last: ${(last as Error).message})`,
    );
  }

  private async attempt(labels: LabelSet): Promise<ClusterAllocation> {
    this.kvOperations++;
    const lock = await this.store.lock(keys.identityLock(labels.id), this.options.lease, { timeoutMs: this.options.lockTimeoutMs ?? 30_000 });
    try {
      let created = false;
      let id = await this.existingId(labels);
      if (id === undefined) {
        // No node uses an ID for these labels right now. A master may still
        // name them (every user released it and the operator has not collected
        // it yet): reuse it, as Cilium's master cache does, or the label set
        // would get a second ID. Masters for these labels are only created
        // under this lock, so a listing sees every one of them; the watched
        // mirror can miss one created moments ago by a node that has already
        // released it, and the label set then gets a second ID, as in Cilium
        // (the operator collects the unused one).
        const used = new Set<number>();
        const mine: number[] = [];
        for (const master of await this.masters()) {
          used.add(master.id);
          if (master.labels === labels.id) mine.push(master.id);
        }
        for (const candidate of mine.sort((a, b) => a - b)) {
          if (await this.ensureMaster(candidate, labels)) {
            id = candidate;
            break;
          }
        }
        if (id === undefined) {
          id = this.pickFreeId(used);
          this.kvOperations++;
          const made = await this.store.create(keys.identityMaster(id), masterValue(labels));
          if (!made.succeeded) throw new RaceError(`ID ${id} was taken by another label set meanwhile`);
          created = true;
        }
      }
      // Our key is written only while we still hold the lock: a holder whose
      // lock lease expired cannot bind labels after a newer holder did.
      this.kvOperations++;
      const written = await this.store.txn({
        compare: [lock.guard()],
        success: [{ type: "put", key: keys.identityValue(labels.id, this.options.node), value: JSON.stringify({ id } satisfies IdentityValueRecord), lease: this.options.lease.id }],
      });
      if (!written.succeeded) throw new RaceError(`lock on ${labels.id} was lost before the node key was written`);
      return { id, labels, created };
    } finally {
      await lock.release().catch(() => undefined); // expires with its lease otherwise
    }
  }

  /** Every master: from the watched mirror when there is one, else listed in pages, each page its own call and deadline. */
  private async masters(): Promise<Iterable<KnownMaster>> {
    const known = this.options.knownMasters?.();
    if (known !== undefined) return known;
    const out: KnownMaster[] = [];
    for await (const page of listPages(this.store, keys.identityMasters(), { pageSize: IDENTITY_MASTER_PAGE_SIZE, maxAttempts: 3, clock: this.clock })) {
      this.kvOperations++;
      for (const kv of page.kvs) {
        const master = readMaster(kv.key, kv.value);
        if (master !== undefined) out.push(master);
      }
    }
    return out;
  }

  /**
   * The ID other nodes use for `labels` (any node's value key), after making
   * sure its master still names these labels: re-created if the operator
   * collected it in between, refused if it now names other labels.
   */
  private async existingId(labels: LabelSet): Promise<number | undefined> {
    this.kvOperations++;
    const values = await this.store.list(keys.identityValues(labels.id));
    const ids = new Set<number>();
    for (const kv of values.kvs) {
      try {
        ids.add((decodeRecord(kv.key, kv.value).record as IdentityValueRecord).id);
      } catch {
        // A malformed node key: not ours to fix; the other keys decide.
      }
    }
    for (const id of [...ids].sort((a, b) => a - b)) {
      if (await this.ensureMaster(id, labels)) return id;
    }
    return undefined;
  }

  /** True when `id/<id>` holds `labels` (re-creating it if absent); false if it names other labels. */
  private async ensureMaster(id: number, labels: LabelSet): Promise<boolean> {
    this.kvOperations++;
    const made = await this.store.create(keys.identityMaster(id), masterValue(labels));
    if (made.succeeded) return true;
    if (!made.current) return false;
    try {
      const master = decodeRecord(made.current.key, made.current.value).record as IdentityMasterRecord;
      return LabelSet.parse(master.labels).id === labels.id;
    } catch {
      return false;
    }
  }

  /** A random free ID (random, so allocators racing for different label sets rarely pick the same). */
  private pickFreeId(used: Set<number>): number {
    const span = this.maxId - this.minId + 1;
    if (used.size < span / 2) {
      for (;;) {
        const id = this.minId + Math.floor(this.random() * span);
        if (!used.has(id)) return id;
      }
    }
    const free: number[] = [];
    for (let id = this.minId; id <= this.maxId; id++) if (!used.has(id)) free.push(id);
    if (free.length === 0) throw new MembraneError("EXHAUSTED", `cluster identities exhausted (${this.minId}..${this.maxId} in use)`);
    return free[Math.floor(this.random() * free.length)]!;
  }

  /**
   * Periodic re-sync (Cilium: every 5 min, with jitter): for every identity in
   * use here, re-create its master if the operator collected it and re-write
   * this node's key if it vanished (a lease that expired and was re-granted).
   * Returns conflicts: IDs now naming other labels (reported, not overwritten).
   */
  async resync(): Promise<{ mastersRecreated: number; valuesRewritten: number; conflicts: IdentityConflictError[] }> {
    let mastersRecreated = 0;
    let valuesRewritten = 0;
    const conflicts: IdentityConflictError[] = [];
    for (const held of [...this.held.values()]) {
      await this.serial(held.labels, async () => {
        if (this.held.get(held.labels.id) !== held) return;
        const made = await this.store.create(keys.identityMaster(held.id), masterValue(held.labels));
        if (made.succeeded) mastersRecreated++;
        else if (made.current) {
          const master = decodeRecord(made.current.key, made.current.value).record as IdentityMasterRecord;
          if (LabelSet.parse(master.labels).id !== held.labels.id) {
            conflicts.push(new IdentityConflictError(`identity ${held.id}: this node uses it for ${held.labels.id}, the kvstore says ${master.labels.join(",")}`));
            return;
          }
        }
        const valueKey = keys.identityValue(held.labels.id, this.options.node);
        const current = await this.store.get(valueKey);
        if (!current || current.lease !== this.options.lease.id) {
          await this.store.put(valueKey, JSON.stringify({ id: held.id } satisfies IdentityValueRecord), { lease: this.options.lease.id });
          valuesRewritten++;
        }
      });
    }
    return { mastersRecreated, valuesRewritten, conflicts };
  }
}
