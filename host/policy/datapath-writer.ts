/**
 * Programs the policy tables of one or more datapaths (the Wasm core, the
 * kernel maps) with identical records: what the policy engine produces
 * (EndpointRecord[], IpcacheRecord[], PolicyDiff) is validated and encoded
 * completely first, checked against every target's capacity, and only then
 * written. Only records that change are written, so an entry the engine
 * re-adds unchanged keeps its hit counter.
 */
import { InvalidInputError, MembraneError, wrap } from "../errors.js";
import { POLICY_ENTRY, decodeEndpointInfo, decodePolicyKey } from "../generated/layout.js";
import type { EngineChange } from "./engine.js";
import { decodeEndpointRow, endpointRecords, ipcacheRecord, policyKey, policyValue, type TableRecord } from "./records.js";
import { POLICY_TABLE_NAMES, type PolicyTableName, type PolicyTableStore } from "./tables.js";
import type { EndpointRecord, IpcacheRecord, PolicyDiff } from "./types.js";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const bytes = (h: string) => new Uint8Array(Buffer.from(h, "hex"));

/** A value as the writer compares it: policy hit counters are the datapath's, not the writer's. */
function comparable(table: PolicyTableName, value: Uint8Array): string {
  if (table !== "policy") return hex(value);
  const v = value.slice();
  v.fill(0, POLICY_ENTRY.offsets.hits, POLICY_ENTRY.offsets.hits + 8);
  return hex(v);
}

export interface WriteSummary {
  /** Records stored (new or changed), per target. */
  written: number;
  /** Records removed, per target. */
  deleted: number;
}

export class PolicyDatapathWriter {
  /** What every target holds: table -> key hex -> comparable value hex. */
  private readonly shadow = new Map<PolicyTableName, Map<string, string>>();

  /** Takes the current contents of the first target as the starting point (pinned maps survive restarts). */
  constructor(private readonly targets: readonly PolicyTableStore[]) {
    if (targets.length === 0) throw new InvalidInputError("policy writer: needs at least one datapath");
    for (const table of POLICY_TABLE_NAMES) {
      this.shadow.set(table, new Map(targets[0].dump(table).map(([k, v]) => [hex(k), comparable(table, v)])));
    }
  }

  /** Replaces the set of local endpoints. */
  setEndpoints(endpoints: readonly EndpointRecord[]): WriteSummary {
    if (!Array.isArray(endpoints)) throw new InvalidInputError("endpoints: expected an array");
    const ids = new Set<number>();
    const records: TableRecord[] = [];
    endpoints.forEach((ep, i) => {
      const recs = endpointRecords(ep, `endpoints[${i}] (id ${JSON.stringify(ep?.id)})`);
      if (ids.has(ep.id)) throw new InvalidInputError(`endpoints[${i}]: id ${ep.id} appears twice`);
      ids.add(ep.id);
      records.push(...recs);
    });
    return this.replace(["endpoints4", "endpoints6"], records, "address");
  }

  /** Replaces the ipcache. */
  setIpcache(prefixes: readonly IpcacheRecord[]): WriteSummary {
    if (!Array.isArray(prefixes)) throw new InvalidInputError("ipcache: expected an array");
    return this.replace(["ipcache4", "ipcache6"], prefixes.map((p, i) => ipcacheRecord(p, `ipcache[${i}] (${JSON.stringify(p?.cidr)})`)), "prefix");
  }

  /**
   * Replaces the whole policy table with `policy` (as engine.snapshot().policy
   * gives it): each endpoint it names holds exactly its entries, and entries of
   * endpoints it does not name are removed. Validated completely before a
   * write. For an agent reconciling the pinned maps a restart found.
   */
  setPolicy(policy: PolicyDiff): WriteSummary {
    return this.sync("policy", this.planPolicy(policy, new Map()), "policy entries");
  }

  /** Endpoint ids the tables hold now: endpoint records (with their addresses) and policy entries. */
  endpointIds(): { records: Map<number, string[]>; policy: Set<number> } {
    const records = new Map<number, string[]>();
    for (const t of ["endpoints4", "endpoints6"] as const) {
      for (const [k, v] of this.shadow.get(t)!) {
        const row = decodeEndpointRow(t, bytes(k), bytes(v));
        records.set(row.id, [...(records.get(row.id) ?? []), row.address]);
      }
    }
    const policy = new Set([...this.shadow.get("policy")!.keys()].map((k) => decodePolicyKey(bytes(k)).endpointId));
    return { records, policy };
  }

  /** Applies the engine's diff: per endpoint, removals first, then additions (a deny wins over an allow added under the same key). */
  applyPolicy(diff: PolicyDiff): WriteSummary {
    return this.sync("policy", this.planPolicy(diff, this.shadow.get("policy")!), "policy entries");
  }

  /**
   * Applies one EngineChange (or `engine.snapshot()` for a fresh datapath):
   * endpoint records, ipcache and policy entries together. Everything is
   * validated and checked against every target's capacity before the first
   * write. Writes go policy entries, then ipcache, then endpoint records, so a
   * new endpoint starts enforcing only when its table is complete and a new
   * address never resolves to an identity the tables do not know yet; an
   * endpoint removed loses its table (every entry under its id) with it.
   * Endpoints without an address have no datapath record (nothing can match
   * them) and are skipped.
   */
  applyChange(change: EngineChange): WriteSummary {
    if (typeof change !== "object" || change === null || typeof change.endpoints !== "object" || typeof change.ipcache !== "object") {
      throw new InvalidInputError("engine change: expected { policy, endpoints, ipcache }");
    }
    const { upsert: endpoints, remove: removedIds } = change.endpoints;
    const { upsert: prefixes, remove: removedPrefixes } = change.ipcache;
    if (![endpoints, removedIds, prefixes, removedPrefixes].every(Array.isArray)) {
      throw new InvalidInputError("engine change: endpoints and ipcache need upsert and remove arrays");
    }
    removedIds.forEach((id, i) => {
      if (!Number.isInteger(id) || id < 1 || id > 0xffff) throw new InvalidInputError(`endpoints.remove[${i}]: expected an endpoint id 1..65535, got ${JSON.stringify(id)}`);
    });
    const removed = new Set(removedIds);
    const policyBase = new Map([...this.shadow.get("policy")!].filter(([k]) => !removed.has(decodePolicyKey(bytes(k)).endpointId)));
    const next = new Map<PolicyTableName, Map<string, string>>([["policy", this.planPolicy(change.policy, policyBase)]]);

    for (const t of ["ipcache4", "ipcache6"] as const) next.set(t, new Map(this.shadow.get(t)!));
    removedPrefixes.forEach((cidr, i) => {
      const r = ipcacheRecord({ cidr, identity: 1 }, `ipcache.remove[${i}] (${JSON.stringify(cidr)})`);
      next.get(r.table)!.delete(hex(r.key));
    });
    prefixes.forEach((p, i) => {
      const r = ipcacheRecord(p, `ipcache.upsert[${i}] (${JSON.stringify(p?.cidr)})`);
      next.get(r.table)!.set(hex(r.key), hex(r.value));
    });

    // An upserted endpoint's old records go first: its address may have changed.
    const replaced = new Set<number>(removed);
    const records: TableRecord[] = [];
    endpoints.forEach((ep, i) => {
      const what = `endpoints.upsert[${i}] (id ${JSON.stringify(ep?.id)})`;
      if (replaced.has(ep?.id)) throw new InvalidInputError(`${what}: id ${ep.id} is also ${removed.has(ep.id) ? "removed" : "upserted"} by this change`);
      if (typeof ep === "object" && ep !== null && ep.ipv4 === undefined && ep.ipv6 === undefined) { replaced.add(ep.id); return; }
      records.push(...endpointRecords(ep, what));
      replaced.add(ep.id);
    });
    for (const t of ["endpoints4", "endpoints6"] as const) {
      next.set(t, new Map([...this.shadow.get(t)!].filter(([, v]) => !replaced.has(decodeEndpointInfo(bytes(v)).id))));
    }
    for (const r of records) {
      const m = next.get(r.table)!;
      const k = hex(r.key);
      if (m.has(k)) throw new InvalidInputError(`${r.table}: an address of endpoint ${decodeEndpointInfo(r.value).id} belongs to endpoint ${decodeEndpointInfo(bytes(m.get(k)!)).id} too`);
      m.set(k, hex(r.value));
    }

    for (const [t, m] of next) this.checkCapacity(t, m.size, t === "policy" ? "policy entries" : `${t} entries`);
    const total = { written: 0, deleted: 0 };
    for (const t of ["policy", "ipcache4", "ipcache6", "endpoints4", "endpoints6"] as const) {
      const s = this.sync(t, next.get(t)!, t === "policy" ? "policy entries" : `${t} entries`);
      total.written += s.written;
      total.deleted += s.deleted;
    }
    return total;
  }

  /** The policy table after `diff`, validated completely; nothing written. */
  private planPolicy(diff: PolicyDiff, base: Map<string, string>): Map<string, string> {
    if (typeof diff !== "object" || diff === null || !(diff.changes instanceof Map)) {
      throw new InvalidInputError("policy diff: expected { recomputed, changes: Map }");
    }
    const next = new Map(base);
    for (const [endpointId, change] of diff.changes) {
      const what = `policy diff for endpoint ${endpointId}`;
      if (!Array.isArray(change?.add) || !Array.isArray(change?.remove)) throw new InvalidInputError(`${what}: expected add and remove arrays`);
      change.remove.forEach((e, i) => next.delete(hex(policyKey(endpointId, e, `${what}: remove[${i}]`))));
      const added = new Map<string, string>();
      change.add.forEach((e, i) => {
        const key = hex(policyKey(endpointId, e, `${what}: add[${i}]`));
        const value = hex(policyValue(e.deny, `${what}: add[${i}]`));
        const prior = added.get(key);
        if (prior === undefined || e.deny) added.set(key, value);
      });
      for (const [k, v] of added) next.set(k, v);
    }
    return next;
  }

  private replace(tables: PolicyTableName[], records: TableRecord[], noun: string): WriteSummary {
    const wanted = new Map<PolicyTableName, Map<string, string>>(tables.map((t) => [t, new Map()]));
    for (const r of records) {
      const m = wanted.get(r.table)!;
      const k = hex(r.key);
      if (m.has(k)) throw new InvalidInputError(`${r.table}: the same ${noun} appears twice`);
      m.set(k, hex(r.value));
    }
    for (const t of tables) this.checkCapacity(t, wanted.get(t)!.size, `${t} entries`);
    const total = { written: 0, deleted: 0 };
    for (const t of tables) {
      const s = this.sync(t, wanted.get(t)!, `${t} entries`);
      total.written += s.written;
      total.deleted += s.deleted;
    }
    return total;
  }

  private checkCapacity(table: PolicyTableName, size: number, noun: string): void {
    for (const target of this.targets) {
      const cap = target.capacity(table);
      if (size > cap) throw new InvalidInputError(`${noun}: ${size} do not fit the ${target.engine} datapath's ${table} table (${cap} entries; raise policy.${table.startsWith("ipcache") ? "ipcache" : table === "policy" ? "entries" : "endpoints"})`);
    }
  }

  /** Makes every target's `table` hold exactly `wanted`, writing only differences. */
  private sync(table: PolicyTableName, wanted: Map<string, string>, noun: string): WriteSummary {
    this.checkCapacity(table, wanted.size, noun);
    const current = this.shadow.get(table)!;
    const gone = [...current.keys()].filter((k) => !wanted.has(k));
    const changed = [...wanted].filter(([k, v]) => current.get(k) !== v);
    for (const target of this.targets) {
      try {
        for (const k of gone) target.delete(table, bytes(k));
        for (const [k, v] of changed) target.upsert(table, bytes(k), bytes(v));
      } catch (err) {
        // The shadow no longer matches this target: re-read it so the next write repairs the difference.
        this.shadow.set(table, new Map(this.targets[0].dump(table).map(([k, v]) => [hex(k), comparable(table, v)])));
        throw err instanceof MembraneError ? wrap(`write ${table}`, err) : err;
      }
    }
    this.shadow.set(table, new Map(wanted));
    return { written: changed.length, deleted: gone.length };
  }
}
