/**
 * `membrane apply` / `membrane delete` against the kvstore: the manifests
 * (already validated in full by readManifests, so a bad file never gets
 * here) are written under membrane/manifests/v1/ in as few transactions as
 * etcd allows (128 operations each), skipping objects whose stored form is
 * unchanged so a re-apply moves no revision. The operator turns them into
 * slim records.
 */
import { wrap } from "../errors.js";
import type { Compare, KvStore, TxnOp } from "../kvstore/store.js";
import { manifestKey, encodeManifest } from "./manifest-store.js";
import { manifestId, type Manifest } from "./manifests/kinds.js";

/** etcd's default --max-txn-ops is 128. */
export const MAX_TXN_OPS = 128;

export type ApplyOutcome = "created" | "configured" | "unchanged";
export type DeleteOutcome = "deleted" | "not found";

export interface ApplyResult<O> {
  objects: { id: string; key: string; outcome: O }[];
  /** Store revision after the last write (the current one when nothing was written). */
  revision: number;
}

async function currentValues(store: KvStore, keyList: string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (let i = 0; i < keyList.length; i += MAX_TXN_OPS) {
    const chunk = keyList.slice(i, i + MAX_TXN_OPS);
    const read = await store.txn({ compare: [], success: chunk.map((key) => ({ type: "get", key }) as TxnOp) });
    read.results.forEach((r) => {
      if (r.type === "get" && r.kv) out.set(r.kv.key, r.kv.value);
    });
  }
  return out;
}

async function writeInChunks(store: KvStore, ops: TxnOp[], guard: readonly Compare[]): Promise<number | undefined> {
  let revision: number | undefined;
  for (let i = 0; i < ops.length; i += MAX_TXN_OPS) {
    const result = await store.txn({ compare: guard, success: ops.slice(i, i + MAX_TXN_OPS) });
    if (!result.succeeded) throw new Error("the guard of the write no longer holds");
    revision = result.revision;
  }
  return revision;
}

/** Stores every manifest; unchanged ones are not written. `guard`: compares every write must pass (the operator's lock for --watch-dir). */
export async function applyManifests(store: KvStore, manifests: readonly Manifest[], guard: readonly Compare[] = []): Promise<ApplyResult<ApplyOutcome>> {
  try {
    const entries = manifests.map((m) => ({ id: manifestId(m), key: manifestKey(m), value: encodeManifest(m) }));
    const current = await currentValues(store, entries.map((e) => e.key));
    const ops: TxnOp[] = [];
    const objects = entries.map(({ id, key, value }) => {
      const before = current.get(key);
      const outcome: ApplyOutcome = before === undefined ? "created" : before === value ? "unchanged" : "configured";
      if (outcome !== "unchanged") ops.push({ type: "put", key, value });
      return { id, key, outcome };
    });
    const revision = (await writeInChunks(store, ops, guard)) ?? (await store.revision());
    return { objects, revision };
  } catch (err) {
    throw wrap(`apply manifests to ${store.location}`, err);
  }
}

/** Removes the stored manifests of these objects (the operator then removes what it derived from them). */
export async function deleteManifests(store: KvStore, manifests: readonly Manifest[], guard: readonly Compare[] = []): Promise<ApplyResult<DeleteOutcome>> {
  try {
    const entries = manifests.map((m) => ({ id: manifestId(m), key: manifestKey(m) }));
    const current = await currentValues(store, entries.map((e) => e.key));
    const ops: TxnOp[] = [];
    const objects = entries.map(({ id, key }) => {
      const outcome: DeleteOutcome = current.has(key) ? "deleted" : "not found";
      if (outcome === "deleted") ops.push({ type: "delete", key });
      return { id, key, outcome };
    });
    const revision = (await writeInChunks(store, ops, guard)) ?? (await store.revision());
    return { objects, revision };
  } catch (err) {
    throw wrap(`delete manifests from ${store.location}`, err);
  }
}
