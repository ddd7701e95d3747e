/**
 * The one kvstore interface membrane programs against, shaped like etcd v3:
 * a single global revision that every write bumps, per-key create/mod
 * revisions and versions, list-then-watch from a revision, leases whose expiry
 * deletes the keys bound to them, compare-and-swap on a key's mod revision,
 * transactions, locks fenced by a lease, and compaction.
 *
 * Two backends implement it: the embedded store (a kine-style revisioned log
 * on LMDB, shared by every membrane process on one machine) and etcd. Both
 * pass the same conformance suite (test/kvstore/conformance.ts), so callers
 * never branch on the backend.
 *
 * Keys and values are strings (values are UTF-8 text; membrane's records are
 * JSON). Revisions are JavaScript numbers: etcd's int64 revisions stay far
 * below 2^53 in any real cluster, and numbers compare without BigInt ceremony.
 * Lease IDs are decimal strings because etcd's are random int64s.
 */
import { MembraneError } from "../errors.js";

/** A store-wide revision: every write (put, delete, txn with writes, lease expiry) bumps it by one. */
export type Revision = number;

/** A lease ID as a decimal string (etcd's IDs are int64 and do not fit a number). */
export type LeaseId = string;

/** One key's current state. */
export interface KeyValue {
  readonly key: string;
  readonly value: string;
  /** Revision of the write that created the key (since its last delete). */
  readonly createRevision: Revision;
  /** Revision of the last write to the key. */
  readonly modRevision: Revision;
  /** Number of puts since the key was created (1 after create); 0 never appears on a live key. */
  readonly version: number;
  /** The lease the key is bound to, or undefined. */
  readonly lease: LeaseId | undefined;
}

/** A list, with the store revision it was read at: watch from `revision + 1` to miss nothing. */
export interface ListResult {
  readonly kvs: KeyValue[];
  /** The revision the keys reflect: `options.revision` when one was asked for, else the store's revision at the read. */
  readonly revision: Revision;
  /** true when `limit` cut the answer and more keys follow (the next page starts after the last key). */
  readonly more?: boolean;
}

export interface PutOptions {
  /** Bind the key to this lease: the key is deleted when the lease expires or is revoked. */
  readonly lease?: LeaseId;
}

/**
 * One page of a list (paged-list.ts walks all pages). A whole paged list is
 * one consistent snapshot: the first page is read now, every later page at
 * the first page's revision, starting after the previous page's last key
 * (`startAfter`).
 */
export interface ListOptions {
  /** At most this many keys (in key order): one page. Undefined: all. */
  readonly limit?: number;
  /** Start after this key (exclusive; it must start with the prefix): the previous page's last key. Undefined: from the prefix's first key. */
  readonly startAfter?: string;
  /** Read the keys as they were at this revision (CompactedError when history before it was compacted). Undefined: now. */
  readonly revision?: Revision;
}

/** The result of a conditional write (create-only, compare-and-swap, conditional delete). */
export interface ConditionalResult {
  /** true when the condition held and the write happened. */
  readonly succeeded: boolean;
  /** The store revision after the operation (the write's revision when it succeeded). */
  readonly revision: Revision;
  /** When the condition failed: the key's current state (undefined if absent). */
  readonly current?: KeyValue;
}

export interface DeleteResult {
  /** Number of keys deleted (0 or 1 for a single key). */
  readonly deleted: number;
  /** The store revision after the operation. */
  readonly revision: Revision;
}

// ---------------------------------------------------------------- transactions

/** What a comparison reads from a key. An absent key has createRevision = modRevision = version = 0 and no value. */
export type CompareTarget = "createRevision" | "modRevision" | "version" | "value" | "lease";

/** One condition of a transaction, etcd's Compare. */
export interface Compare {
  readonly key: string;
  readonly target: CompareTarget;
  readonly op: "==" | "!=" | "<" | ">";
  /** number for revisions/version, string for value and lease ("" or "0": no lease). */
  readonly value: number | string;
}

/** One operation of a transaction branch. A key may be written at most once per branch. */
export type TxnOp =
  | { readonly type: "get"; readonly key: string }
  | { readonly type: "list"; readonly prefix: string }
  | { readonly type: "put"; readonly key: string; readonly value: string; readonly lease?: LeaseId }
  | { readonly type: "delete"; readonly key: string }
  | { readonly type: "deletePrefix"; readonly prefix: string };

/** Per operation, in order: get -> kv (undefined if absent), list -> kvs, put -> nothing, delete(Prefix) -> count. */
export type TxnOpResult =
  | { readonly type: "get"; readonly kv: KeyValue | undefined }
  | { readonly type: "list"; readonly kvs: KeyValue[] }
  | { readonly type: "put" }
  | { readonly type: "delete"; readonly deleted: number }
  | { readonly type: "deletePrefix"; readonly deleted: number };

export interface Txn {
  /** All must hold for `success` to run; otherwise `failure` runs. Empty: always success. */
  readonly compare: readonly Compare[];
  readonly success: readonly TxnOp[];
  readonly failure?: readonly TxnOp[];
}

export interface TxnResult {
  readonly succeeded: boolean;
  /** Store revision after the txn: all writes of one txn share ONE new revision (reads-only txns bump nothing). */
  readonly revision: Revision;
  /** Results of the branch that ran, one per op. */
  readonly results: TxnOpResult[];
}

// ---------------------------------------------------------------- watch

/** One change. Events of one txn / deletePrefix / lease expiry share a revision; order within it is key order of the write. */
export interface WatchEvent {
  readonly type: "put" | "delete";
  /** After a put: the new state. After a delete: key and modRevision (= the delete's revision); value "", createRevision 0, version 0, no lease (as etcd sends it). */
  readonly kv: KeyValue;
  /** The state before the change: only when the watch asked for it (`WatchOptions.prevKv`) and the backend had it (always on embedded; on etcd when still in history). */
  readonly prevKv?: KeyValue;
  /** The revision of the write that caused the event (= kv.modRevision). */
  readonly revision: Revision;
}

export interface WatchOptions {
  /**
   * First revision to deliver (inclusive). Undefined: changes after the
   * watch starts. List-then-watch: `fromRevision: list.revision + 1`.
   * A revision older than the compacted one fails with CompactedError.
   */
  readonly fromRevision?: Revision;
  /**
   * Also deliver each event's previous state (`WatchEvent.prevKv`). Off by
   * default: etcd answers it with one read at the previous revision for
   * every event but a create that it sends to every watcher, so with 5,000 agents one write
   * costs etcd 5,000 reads (docs/scale.md, "prev_kv"). Agents do not need
   * it: a put is a create when `kv.createRevision === kv.modRevision`, and a
   * delete names its key. Cilium's watches do not ask for it either.
   */
  readonly prevKv?: boolean;
}

/**
 * A running watch. Consume it with `for await (const ev of watch)`; events
 * arrive in revision order, never repeated and never skipped, across the
 * backend's reconnects (it resumes from the last delivered revision + 1).
 * The iteration ends (done) after `close()` of the watch or of its store; it
 * throws CompactedError when the history it needs was compacted (re-list,
 * then watch again). Backend outages never end it: it resumes by itself.
 */
export interface Watch extends AsyncIterable<WatchEvent> {
  readonly prefix: string;
  /** Revision of the last event delivered (or fromRevision - 1 before the first). */
  readonly lastRevision: Revision;
  /** Resolves once the watch is established with the backend (events from then on are caught). */
  readonly ready: Promise<void>;
  /** Stops the watch; a pending iteration ends (done). Idempotent. */
  close(): Promise<void>;
}

// ---------------------------------------------------------------- leases and locks

export interface LeaseOptions {
  /** Keep the lease alive automatically (every ttl/3, with jitter) until revoked or closed. Default true. */
  readonly autoKeepAlive?: boolean;
}

export interface Lease {
  readonly id: LeaseId;
  /** Granted time to live in seconds. */
  readonly ttl: number;
  /** Refreshes the lease once. Throws KvStoreError LEASE_NOT_FOUND when it already expired. */
  keepAlive(): Promise<void>;
  /** Revokes the lease: its keys are deleted (in one revision). Idempotent. */
  revoke(): Promise<void>;
  /** Stops automatic keep-alive without revoking (the lease then expires after its TTL). */
  release(): void;
  /** Called once if automatic keep-alive finds the lease gone (expired or revoked elsewhere). */
  onLost(listener: (err: KvStoreError) => void): void;
}

export interface LockOptions {
  /** Give up with KvStoreError LOCK_TIMEOUT after this many ms. Undefined: wait forever. */
  readonly timeoutMs?: number;
  /** Give up (rejecting with the signal's reason) when aborted. */
  readonly signal?: AbortSignal;
}

/**
 * A held lock: key `name` created with the holder's lease. The fencing token
 * is the key's create revision: strictly larger for every later holder, so a
 * write guarded by `guard()` can never come from a holder that already lost it
 * (lease expired, etcd Election's several-leaders bug), whatever it believes.
 */
export interface Lock {
  readonly key: string;
  readonly lease: LeaseId;
  /** The lock key's create revision. */
  readonly fencingToken: Revision;
  /** A comparison that holds only while this holder still owns the lock: add it to a txn's compare. */
  guard(): Compare;
  /** true when the lock key still exists with this holder's create revision. */
  isHeld(): Promise<boolean>;
  /** Deletes the lock key if still ours (guarded by the fencing token). Idempotent. */
  release(): Promise<void>;
}

// ---------------------------------------------------------------- the store

export interface KvStore {
  /** "embedded" or "etcd", for messages and metrics labels. */
  readonly backend: "embedded" | "etcd";
  /** Where it points: the embedded path or the etcd endpoints, for messages. */
  readonly location: string;

  get(key: string): Promise<KeyValue | undefined>;
  /** Keys starting with `prefix` in key order, and the revision read at. "" lists everything. */
  list(prefix: string, options?: ListOptions): Promise<ListResult>;
  /** The store's current revision. */
  revision(): Promise<Revision>;

  /** Unconditional put; returns the write's revision. */
  put(key: string, value: string, options?: PutOptions): Promise<Revision>;
  /** Create-only: succeeds only when the key is absent. */
  create(key: string, value: string, options?: PutOptions): Promise<ConditionalResult>;
  /** Put only if the key's mod revision equals `expectedModRevision` (0: only if absent). */
  compareAndSwap(key: string, expectedModRevision: Revision, value: string, options?: PutOptions): Promise<ConditionalResult>;
  /** Delete; with `expectedModRevision`, only if the key is still at that revision. */
  delete(key: string, options?: { readonly expectedModRevision?: Revision }): Promise<DeleteResult>;
  /** Deletes every key starting with `prefix` ("" is refused: use an explicit prefix) in one revision. */
  deletePrefix(prefix: string): Promise<DeleteResult>;
  /** Several operations atomically, under conditions. */
  txn(txn: Txn): Promise<TxnResult>;

  /** Watches keys starting with `prefix` (a full key watches that key and its extensions). */
  watch(prefix: string, options?: WatchOptions): Watch;

  /** Grants a lease of `ttlSeconds` (>= 1; etcd may round up to its minimum). */
  grantLease(ttlSeconds: number, options?: LeaseOptions): Promise<Lease>;
  /** Waits until the lock `name` is free, then takes it bound to `lease`. */
  lock(name: string, lease: Lease, options?: LockOptions): Promise<Lock>;

  /**
   * Drops history older than `revision` (etcd semantics): a watch may still
   * start at `revision`; one starting before it fails with CompactedError.
   * The embedded store also compacts by itself, keeping the last N revisions.
   */
  compact(revision: Revision): Promise<void>;
  /** The revision of the last compaction (0: never): watches must start at or after it. */
  compactedRevision(): Promise<Revision>;

  /** Closes watches, stops keep-alives (leases are NOT revoked: they expire) and releases the backend. Idempotent. */
  close(): Promise<void>;
}

// ---------------------------------------------------------------- errors

/** Stable codes of KvStoreError. */
export type KvStoreErrorCode =
  | "KVSTORE_UNAVAILABLE" // backend unreachable / I/O failure; retry with backoff
  | "KVSTORE_COMPACTED" // see CompactedError
  | "KVSTORE_LEASE_NOT_FOUND" // lease expired or revoked
  | "KVSTORE_LOCK_TIMEOUT" // lock() gave up
  | "KVSTORE_CLOSED" // the store (or watch) was closed
  | "KVSTORE_TXN_INVALID" // a txn writes one key twice, or an op is malformed
  | "KVSTORE_INTERNAL"; // a bug or a corrupted store

export class KvStoreError extends MembraneError {
  declare readonly code: KvStoreErrorCode;
  constructor(code: KvStoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** The requested history is gone: re-list (which yields a fresh revision) and watch from there. */
export class CompactedError extends KvStoreError {
  /** The store's compacted revision: the oldest revision a watch can still start from. */
  readonly compactedRevision: Revision;
  /** The revision the caller asked for. */
  readonly requestedRevision: Revision;
  constructor(requestedRevision: Revision, compactedRevision: Revision, where: string) {
    super(
      "KVSTORE_COMPACTED",
      `${where}: revision ${requestedRevision} has been compacted (history starts at ${compactedRevision}); re-list and watch again`,
    );
    this.compactedRevision = compactedRevision;
    this.requestedRevision = requestedRevision;
  }
}

/** True for errors a caller should retry with backoff (the store is unreachable for now). */
export function isRetryableKvStoreError(err: unknown): boolean {
  return err instanceof KvStoreError && err.code === "KVSTORE_UNAVAILABLE";
}
