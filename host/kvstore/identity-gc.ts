/**
 * Identity garbage collection, run by the single operator (Cilium 1.5 moved
 * it there from every agent): delete each master key `id/<ID>` that no node
 * key `value/<labels>/<node>` references.
 *
 * Each deletion happens under the label set's lock, after re-reading the node
 * keys, and only if the master is still at the revision seen: an agent that
 * is between creating a master and writing its node key holds that lock, so
 * the collector can never delete a master a node is about to use (which would
 * let the ID be handed to another label set).
 */
import { wrap } from "../errors.js";
import { LabelSet } from "../identity/labels.js";
import { keys } from "./keys.js";
import { decodeRecord } from "./records/codec.js";
import type { IdentityMasterRecord, IdentityValueRecord } from "./records/identity.js";
import type { KvStore, Lease } from "./store.js";

export interface IdentityGcResult {
  /** IDs deleted. */
  deleted: number[];
  /** Masters still referenced. */
  alive: number;
  /** Keys that could not be read (left alone, named here). */
  unreadable: string[];
}

export async function collectIdentities(store: KvStore, lockLease: Lease): Promise<IdentityGcResult> {
  const [masters, values] = [await store.list(keys.identityMasters()), await store.list(keys.identityValues())];
  const referenced = new Set<string>(); // "<labels>#<id>"
  const unreadable: string[] = [];
  for (const kv of values.kvs) {
    try {
      const { key, record } = decodeRecord(kv.key, kv.value);
      referenced.add(`${key.path[1]}#${(record as IdentityValueRecord).id}`);
    } catch {
      unreadable.push(kv.key);
    }
  }
  const deleted: number[] = [];
  let alive = 0;
  for (const kv of masters.kvs) {
    let labels: string;
    let id: number;
    try {
      const { key, record } = decodeRecord(kv.key, kv.value);
      labels = LabelSet.parse((record as IdentityMasterRecord).labels).id;
      id = Number(key.path[1]);
    } catch {
      unreadable.push(kv.key);
      continue;
    }
    if (referenced.has(`${labels}#${id}`)) {
      alive++;
      continue;
    }
    try {
      if (await deleteIfUnreferenced(store, lockLease, labels, id, kv.modRevision)) deleted.push(id);
      else alive++;
    } catch (err) {
      throw wrap(`collect identity ${id} (${labels})`, err);
    }
  }
  return { deleted, alive, unreadable };
}

async function deleteIfUnreferenced(store: KvStore, lease: Lease, labels: string, id: number, seenRevision: number): Promise<boolean> {
  const lock = await store.lock(keys.identityLock(labels), lease, { timeoutMs: 30_000 });
  try {
    const nodeKeys = await store.list(keys.identityValues(labels));
    for (const kv of nodeKeys.kvs) {
      try {
        if ((decodeRecord(kv.key, kv.value).record as IdentityValueRecord).id === id) return false;
      } catch {
        return false; // unreadable reference: keep the master, be safe
      }
    }
    const result = await store.txn({
      compare: [lock.guard(), { key: keys.identityMaster(id), target: "modRevision", op: "==", value: seenRevision }],
      success: [{ type: "delete", key: keys.identityMaster(id) }],
    });
    return result.succeeded;
  } finally {
    await lock.release().catch(() => undefined);
  }
}

/** Every master in the store: ID -> label set id (for tests and `membrane identity list`). */
export async function listClusterIdentities(store: KvStore): Promise<Map<number, string>> {
  const out = new Map<number, string>();
  for (const kv of (await store.list(keys.identityMasters())).kvs) {
    const { key, record } = decodeRecord(kv.key, kv.value);
    out.set(Number(key.path[1]), LabelSet.parse((record as IdentityMasterRecord).labels).id);
  }
  return out;
}
