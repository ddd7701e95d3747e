/**
 * A list of a prefix in pages, as one consistent snapshot: the first page is
 * read now and pins its revision; every later page reads at that revision,
 * starting after the previous page's last key. Whatever is written meanwhile
 * is not in the list, and the watch that follows (from revision + 1) delivers
 * it, exactly as after an unpaged list.
 *
 * Why pages: a 100,000-pod cluster's prefix is tens of MB in one reply, which
 * one call must fetch within its deadline (5 s per call); hundreds of agents
 * listing at once then all time out together and all list again together,
 * for ever. A page is one call with its own deadline.
 *
 * A failed page is retried IN PLACE (the same start key at the same
 * revision), with backoff; the list never restarts from its first page for a
 * transient failure, so work already fetched is never fetched again. Only a
 * CompactedError (the pinned revision is gone from history) ends the list:
 * the caller lists again, at a fresh revision. Errors that retrying cannot
 * fix (closed store, bad input) end it too.
 */
import { systemClock, type Clock } from "./clock.js";
import { isRetryableKvStoreError, type KeyValue, type KvStore, type ListResult, type Revision } from "./store.js";

/**
 * Keys per page by default: about 1.5 MB of pod records, far inside a 5 s
 * deadline. Smaller pages cost etcd more: it walks the rest of the range for
 * every page (to count it), so a 100,000-key prefix took 1.8 s in pages of
 * 1,000 and 1.0 s in pages of 5,000 (1.1 s unpaged) on the shared machine.
 */
export const DEFAULT_LIST_PAGE_SIZE = 5000;

/** A queue of page requests (host/sim/list-gate.ts): bounds how many pages are fetched and consumed at once. */
export interface PageGate {
  /** A place in the queue for one whole list: earlier lists go first, so lists finish in the order they began. */
  ticket(): number;
  /** Waits for a turn; call the returned function once the page has been consumed. */
  acquire(ticket: number, signal?: AbortSignal): Promise<() => void>;
}

export interface PagedListOptions {
  /** Keys per page (default DEFAULT_LIST_PAGE_SIZE). */
  pageSize?: number;
  /** The wait before retry `attempt` (1, 2, ...) of a failed page (default 200 ms doubling to 10 s). */
  retryWaitMs?: (attempt: number) => number;
  /** Give up on a page after this many failed attempts (default: retry while the error is retryable). */
  maxAttempts?: number;
  /** Told before each retry wait of a page. */
  onRetry?: (info: { page: number; attempt: number; waitMs: number; error: unknown }) => void;
  gate?: PageGate;
  signal?: AbortSignal;
  clock?: Clock;
}

export interface Page {
  readonly kvs: KeyValue[];
  /** The revision every page of this list reads at (the first page's). */
  readonly revision: Revision;
  /** 0 for the first page. */
  readonly index: number;
  /** Failed attempts of this page before it arrived. */
  readonly retries: number;
}

const defaultWait = (attempt: number) => Math.min(10_000, 200 * 2 ** (attempt - 1));

/**
 * The pages of `prefix` in key order. Consume each page before asking for the
 * next: with a gate, the page's turn ends when the next one is asked for.
 */
export async function* listPages(store: KvStore, prefix: string, options: PagedListOptions = {}): AsyncGenerator<Page> {
  const limit = options.pageSize ?? DEFAULT_LIST_PAGE_SIZE;
  const clock = options.clock ?? systemClock;
  const wait = options.retryWaitMs ?? defaultWait;
  const ticket = options.gate?.ticket() ?? 0;
  let revision: Revision | undefined;
  let startAfter: string | undefined;
  for (let index = 0; ; index++) {
    let attempt = 0;
    let result: ListResult;
    let release: (() => void) | undefined;
    for (;;) {
      options.signal?.throwIfAborted();
      release = await options.gate?.acquire(ticket, options.signal);
      try {
        result = await store.list(prefix, { limit, startAfter, revision });
        break;
      } catch (err) {
        release?.();
        release = undefined;
        attempt++;
        if (!isRetryableKvStoreError(err) || (options.maxAttempts !== undefined && attempt >= options.maxAttempts)) throw err;
        const waitMs = wait(attempt);
        options.onRetry?.({ page: index, attempt, waitMs, error: err });
        await clock.sleep(waitMs, options.signal);
      }
    }
    try {
      revision ??= result.revision;
      const more = result.more ?? result.kvs.length >= limit;
      yield { kvs: result.kvs, revision, index, retries: attempt };
      if (!more || result.kvs.length === 0) return;
      startAfter = result.kvs.at(-1)!.key;
    } finally {
      release?.();
    }
  }
}

/** Every page of `prefix`, concatenated: the same answer as an unpaged list, read page by page. */
export async function pagedList(store: KvStore, prefix: string, options: PagedListOptions = {}): Promise<ListResult & { pages: number; retries: number }> {
  const kvs: KeyValue[] = [];
  let revision: Revision | undefined;
  let pages = 0;
  let retries = 0;
  for await (const page of listPages(store, prefix, options)) {
    for (const kv of page.kvs) kvs.push(kv);
    revision = page.revision;
    pages++;
    retries += page.retries;
  }
  // an empty prefix still has its one (empty) first page, so the revision is always known
  return { kvs, revision: revision!, pages, retries };
}
