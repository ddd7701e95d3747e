/**
 * A list of the embedded store as it was at an older revision, for paged
 * lists: every page after the first reads at the first page's revision, so
 * the pages together are one consistent snapshot even while writes go on.
 *
 * The store keeps only the current values (the index) and a log of what each
 * revision changed, with each key's previous state. The state at revision R
 * is the index with every change after R undone: for each key the log
 * touched after R, its previous state in the FIRST log record after R is its
 * state at R (absent when that record created it). So a list at R is the
 * index merged, in key order, with that overlay; its cost is the page plus
 * the log since R, never the whole prefix.
 *
 * The caller reads the index and the log in one read snapshot and checks
 * that R is not compacted (the log records after R must all still exist).
 */

/** A key's state, as the embedded store keeps it. */
export interface StoredState {
  v: string;
  c: number;
  m: number;
  ver: number;
  l?: string;
}

/** One change of a log record: key, deleted or not, new state, previous state (absent: the key was created). */
export interface StoredChange {
  k: string;
  d: boolean;
  kv: StoredState;
  p?: StoredState;
}

export interface RevisionedSource {
  /** Current keys in key order, from `start` (inclusive) on, past the prefix too (the caller stops). */
  index(start: string): Iterable<{ key: string; value: StoredState }>;
  /** Log records with revisions in [from, to], in revision order. */
  log(from: number, to: number): Iterable<{ key: number; value: StoredChange[] }>;
}

export interface ListAtOptions {
  prefix: string;
  /** Exclusive: the page starts after this key. */
  startAfter?: string;
  limit?: number;
  /** The revision to read at (<= current). */
  revision: number;
  /** The store's current revision, read in the same snapshot as the index and the log. */
  current: number;
}

/** Key order of the index: lmdb-js orders string keys by their UTF-8 bytes, which is code unit order for membrane's ASCII keys. */
function before(a: string, b: string): boolean {
  return a < b;
}

/** The keys of `prefix` at `revision`, after `startAfter`, at most `limit` (and whether more follow). */
export function listAtRevision(src: RevisionedSource, o: ListAtOptions): { entries: { key: string; state: StoredState }[]; more: boolean } {
  const inRange = (k: string) => k.startsWith(o.prefix) && (o.startAfter === undefined || before(o.startAfter, k));
  // the state at `revision` of every key changed since: the first change after it says what it was
  const overlay = new Map<string, StoredState | null>();
  if (o.revision < o.current) {
    for (const { value } of src.log(o.revision + 1, o.current)) {
      for (const change of value) if (inRange(change.k) && !overlay.has(change.k)) overlay.set(change.k, change.p ?? null);
    }
  }
  const changed = [...overlay.keys()].sort((a, b) => (before(a, b) ? -1 : before(b, a) ? 1 : 0));
  const want = o.limit === undefined ? Infinity : o.limit + 1; // one more than asked: tells whether more follow
  const out: { key: string; state: StoredState }[] = [];
  let j = 0;
  const emitChanged = (key: string) => {
    const s = overlay.get(key);
    if (s) out.push({ key, state: s });
  };
  for (const { key, value } of src.index(o.startAfter ?? o.prefix)) {
    if (!key.startsWith(o.prefix)) break;
    if (key === o.startAfter) continue;
    // keys deleted since `revision` (absent from the index now) that sort before this one
    while (j < changed.length && before(changed[j]!, key) && out.length < want) emitChanged(changed[j++]!);
    if (out.length >= want) break;
    if (overlay.has(key)) {
      if (changed[j] === key) j++;
      emitChanged(key);
    } else {
      out.push({ key, state: value });
    }
    if (out.length >= want) break;
  }
  while (j < changed.length && out.length < want) emitChanged(changed[j++]!);
  const more = out.length > (o.limit ?? Infinity);
  if (more) out.length = o.limit!;
  return { entries: out, more };
}
