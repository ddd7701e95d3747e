/**
 * A prefix of the kvstore mirrored in memory: list, then watch from the
 * list's revision, forever. Every consumer of cluster state (agents, the
 * operator, the simulator) follows the store through one of these.
 *
 * - Nothing is lost or repeated: the watch starts at list.revision + 1 and
 *   resumes from the last delivered revision + 1 after a failure.
 * - Lists are paged (paged-list.ts): one consistent snapshot at the first
 *   page's revision, each page its own call with its own deadline, and a
 *   failed page retried in place with the caller's backoff (never the whole
 *   list again for a transient failure).
 * - A compacted revision (the watch fell too far behind) means re-list: the
 *   new list is diffed against the mirror, so consumers see exactly the
 *   upserts and deletes that happened meanwhile, never a reset.
 * - A record that does not decode (unknown version, bad field) is reported
 *   and skipped, never fatal: one bad record must not stop a node.
 * - Failures back off (the caller's policy: exponential with jitter, scaled
 *   by cluster size); the mirror keeps serving the last state meanwhile, which
 *   is what keeps a node forwarding while the kvstore is away.
 */
import { pagedList, type PageGate } from "./paged-list.js";
import { CompactedError, KvStoreError, type KeyValue, type KvStore, type Revision, type Watch } from "./store.js";

export interface ReflectorHandlers<T> {
  /** A key appeared or changed (prev: the decoded value it had). */
  upsert?(key: string, value: T, prev: T | undefined): void;
  /** A key is gone (prev: its last decoded value). */
  delete?(key: string, prev: T): void;
  /** The mirror equals the store as of `revision` (after the first list, and after each re-list). */
  synced?(revision: Revision): void;
  /** A record was skipped, or the store failed (the reflector retries by itself). */
  problem?(message: string, err?: unknown): void;
}

export interface ReflectorOptions<T> {
  /** Value -> record; throw (InvalidInputError naming the key) to skip a record. */
  decode(kv: KeyValue): T;
  handlers: ReflectorHandlers<T>;
  /** How long to wait before attempt `failures` (1, 2, ...) after the store failed. */
  backoffMs(failures: number): number;
  /** When the last event (or list) arrived, for liveness. */
  now?: () => number;
  /** Keys per list page (default paged-list.ts's DEFAULT_LIST_PAGE_SIZE). */
  pageSize?: number;
  /** Queue for list pages shared with other reflectors (the simulator bounds pages in flight with it). */
  gate?: PageGate;
}

export class Reflector<T> {
  private readonly items = new Map<string, T>();
  /** modRevision per mirrored key: a re-list skips what has not changed. */
  private readonly modRevisions = new Map<string, Revision>();
  private revision: Revision = 0;
  private watch?: Watch;
  private stopped = false;
  private done?: Promise<void>;
  private wake?: () => void;
  private lastEventAt = 0;
  private failures = 0;
  private syncedOnce = false;
  /** resync() asked for a re-list: the next loop turn lists instead of resuming the watch. */
  private resyncWanted = false;
  private readonly now: () => number;
  /** Aborts a list waiting for a page retry or a gate turn when stopped. */
  private readonly abort = new AbortController();

  constructor(
    private readonly store: KvStore,
    readonly prefix: string,
    private readonly options: ReflectorOptions<T>,
  ) {
    this.now = options.now ?? Date.now;
  }

  /** Starts following; resolves after the first list has been applied (or rejects if stopped, or the store closed, first). */
  start(): Promise<void> {
    let resolveFirst!: () => void;
    let rejectFirst!: (err: unknown) => void;
    const first = new Promise<void>((resolve, reject) => {
      resolveFirst = resolve;
      rejectFirst = reject;
    });
    this.done = this.loop(resolveFirst).then(
      () => {
        if (!this.syncedOnce) rejectFirst(new KvStoreError("KVSTORE_CLOSED", `${this.prefix}: stopped before the first list`));
      },
      (err) => rejectFirst(err),
    );
    return first;
  }

  /**
   * Re-list and diff now (the kvstore came back after an outage: whatever
   * the watch may have missed, the mirror then equals the store again).
   * Events already delivered are not repeated: only differences are.
   */
  resync(): void {
    if (this.stopped) return;
    this.resyncWanted = true;
    this.wake?.();
    void this.watch?.close();
  }

  /** The mirrored records (do not mutate). */
  get records(): ReadonlyMap<string, T> {
    return this.items;
  }

  get(key: string): T | undefined {
    return this.items.get(key);
  }

  /** The store revision the mirror reflects. */
  get syncedRevision(): Revision {
    return this.revision;
  }

  get hasSynced(): boolean {
    return this.syncedOnce;
  }

  /** Milliseconds since the last list or event (liveness from the last event, not extra pings). */
  idleMs(): number {
    return this.lastEventAt === 0 ? Infinity : this.now() - this.lastEventAt;
  }

  /** Consecutive failures of the store since the last success (the backoff state, for status). */
  get failureCount(): number {
    return this.failures;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort(new KvStoreError("KVSTORE_CLOSED", `${this.prefix}: reflector stopped`));
    this.wake?.();
    await this.watch?.close();
    await this.done;
  }

  private async loop(firstSynced: () => void): Promise<void> {
    let needList = true;
    while (!this.stopped) {
      if (this.resyncWanted) {
        this.resyncWanted = false;
        needList = true;
      }
      try {
        if (needList) {
          await this.relist();
          needList = false;
          firstSynced();
        }
        await this.follow();
      } catch (err) {
        if (this.stopped) break;
        if (this.resyncWanted) continue; // the watch was closed on purpose
        if (err instanceof KvStoreError && err.code === "KVSTORE_CLOSED") {
          // The store was closed under us: nothing will ever come back; the mirror keeps its last state.
          this.options.handlers.problem?.(`${this.prefix}: the kvstore was closed; no longer following`, err);
          break;
        }
        if (err instanceof CompactedError) {
          this.options.handlers.problem?.(`${this.prefix}: watch history compacted at ${err.compactedRevision}: re-listing`, err);
          needList = true;
          continue;
        }
        this.failures++;
        const wait = this.options.backoffMs(this.failures);
        this.options.handlers.problem?.(`${this.prefix}: ${(err as Error).message}; retrying in ${Math.round(wait)} ms (attempt ${this.failures})`, err);
        await this.sleep(wait);
      }
    }
  }

  /** List, and turn the difference with the mirror into upserts and deletes. */
  private async relist(): Promise<void> {
    const list = await pagedList(this.store, this.prefix, {
      pageSize: this.options.pageSize,
      gate: this.options.gate,
      signal: this.abort.signal,
      retryWaitMs: () => this.options.backoffMs(++this.failures),
      onRetry: ({ page, attempt, waitMs, error }) => {
        this.options.handlers.problem?.(
          `${this.prefix}: list page ${page + 1}: ${(error as Error).message}; retrying that page in ${Math.round(waitMs)} ms (attempt ${attempt})`,
          error,
        );
      },
    });
    this.failures = 0;
    this.lastEventAt = this.now();
    const seen = new Set<string>();
    for (const kv of list.kvs) {
      seen.add(kv.key);
      if (this.modRevisions.get(kv.key) !== kv.modRevision) this.apply(kv);
    }
    for (const [key, prev] of [...this.items]) {
      if (!seen.has(key)) this.remove(key, prev);
    }
    for (const key of [...this.modRevisions.keys()]) if (!seen.has(key)) this.modRevisions.delete(key);
    this.revision = list.revision;
    this.syncedOnce = true;
    this.options.handlers.synced?.(list.revision);
  }

  private async follow(): Promise<void> {
    const watch = this.store.watch(this.prefix, { fromRevision: this.revision + 1 });
    this.watch = watch;
    try {
      for await (const ev of watch) {
        this.failures = 0;
        this.lastEventAt = this.now();
        if (ev.type === "put") {
          this.apply(ev.kv);
        } else {
          const prev = this.items.get(ev.kv.key);
          this.modRevisions.delete(ev.kv.key);
          if (prev !== undefined) this.remove(ev.kv.key, prev);
        }
        this.revision = ev.revision;
        if (this.stopped) break;
      }
    } finally {
      this.watch = undefined;
      await watch.close();
    }
    if (!this.stopped) throw new Error("watch ended");
  }

  private remove(key: string, prev: T): void {
    this.items.delete(key);
    this.options.handlers.delete?.(key, prev);
  }

  private apply(kv: KeyValue): void {
    this.modRevisions.set(kv.key, kv.modRevision);
    let value: T;
    try {
      value = this.options.decode(kv);
    } catch (err) {
      this.options.handlers.problem?.(`skip ${kv.key}: ${(err as Error).message}`, err);
      // A record that no longer decodes is gone as far as consumers are concerned.
      const prev = this.items.get(kv.key);
      if (prev !== undefined) this.remove(kv.key, prev);
      return;
    }
    const prev = this.items.get(kv.key);
    this.items.set(kv.key, value);
    this.options.handlers.upsert?.(kv.key, value, prev);
  }

  private sleep(ms: number): Promise<void> {
    if (this.stopped || this.resyncWanted) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, ms);
      this.wake = () => {
        this.wake = undefined;
        clearTimeout(t);
        resolve();
      };
    });
  }
}
