/**
 * The change that takes datapaths holding `before` to holding `after`, both
 * full snapshots (PolicyEngine.snapshot()): what an agent whose state file
 * was edited applies, so the maps get only the difference and the kernel
 * datapath re-instantiates only the endpoints whose values changed.
 */
import { entryKey } from "./compute.js";
import type { EngineChange } from "./engine.js";
import type { PolicyDiff, PolicyEntry } from "./types.js";

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
const fullKey = (e: PolicyEntry) => `${entryKey(e)}/${e.deny ? "deny" : "allow"}`;

export function changeBetween(before: EngineChange, after: EngineChange): EngineChange {
  const oldEndpoints = new Map(before.endpoints.upsert.map((e) => [e.id, e]));
  const newIds = new Set(after.endpoints.upsert.map((e) => e.id));
  const oldPrefixes = new Map(before.ipcache.upsert.map((p) => [p.cidr, p.identity]));
  const newPrefixes = new Set(after.ipcache.upsert.map((p) => p.cidr));

  const changes: PolicyDiff["changes"] = new Map();
  for (const id of new Set([...before.policy.changes.keys(), ...after.policy.changes.keys()])) {
    if (!newIds.has(id)) continue; // a removed endpoint's table goes with it
    const was = new Map((before.policy.changes.get(id)?.add ?? []).map((e) => [fullKey(e), e]));
    const now = new Map((after.policy.changes.get(id)?.add ?? []).map((e) => [fullKey(e), e]));
    const add = [...now].filter(([k]) => !was.has(k)).map(([, e]) => e);
    const remove = [...was].filter(([k]) => !now.has(k)).map(([, e]) => e);
    if (add.length || remove.length) changes.set(id, { add, remove });
  }
  return {
    policy: { recomputed: [...changes.keys()], changes },
    endpoints: {
      upsert: after.endpoints.upsert.filter((e) => !same(oldEndpoints.get(e.id), e)),
      remove: [...oldEndpoints.keys()].filter((id) => !newIds.has(id)),
    },
    ipcache: {
      upsert: after.ipcache.upsert.filter((p) => oldPrefixes.get(p.cidr) !== p.identity),
      remove: [...oldPrefixes.keys()].filter((cidr) => !newPrefixes.has(cidr)),
    },
    entriesComputed: 0,
  };
}
