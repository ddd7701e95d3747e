/**
 * The policy repository: endpoints, policies, identities and the ipcache, and
 * the regeneration of endpoints' policy tables when any of them changes.
 *
 * An endpoint's table depends on (a) the rules whose subject selects its
 * labels and (b) for each of those rules' peers, the identities that peer
 * selects. So, exactly:
 * - adding/removing rules changes (a) only for the endpoints those rules
 *   select: they are recomputed;
 * - a new or released identity (an endpoint with a label set nobody had, the
 *   last endpoint of a label set leaving, a CIDR prefix first/last named by a
 *   rule) changes (b) for every peer that selects it: the endpoints selected
 *   by the rules holding those peers are recomputed too. Without this, a new
 *   CIDR identity for 10.1.0.0/16 would take addresses that an existing
 *   10.0.0.0/8 rule admits, through the ipcache's longest prefix match, out of
 *   that rule's reach;
 * - an endpoint whose labels change is recomputed itself (its (a) changes),
 *   plus the above for its old and new identity;
 * - an endpoint with a label set that already had an identity changes nobody
 *   else's table.
 * Nothing else is recomputed. In "full" mode every change recomputes every
 * endpoint from scratch (no cached selections), for comparison.
 *
 * Every public change validates its input completely first; what it returns
 * (EngineChange) is what the datapath writers apply. Order for writers: policy
 * entries before ipcache upserts, so an address never resolves to an identity
 * its endpoints' tables do not know yet.
 */
import { InvalidInputError } from "../errors.js";
import { LocalIdentityAllocator, type Identity, type IdentityAllocator } from "../identity/allocator.js";
import { hostPrefix, longestMatch, type Prefix } from "../packet/cidr.js";
import type { LabelSet } from "../identity/labels.js";
import { computePolicy, entryKey, rulesSelecting, type ComputedPolicy } from "./compute.js";
import type { PolicyDocument } from "./document.js";
import type { EndpointInput } from "./endpoint.js";
import { peerKey, peerMatches, rulePrefixes, type Peer, type Rule } from "./rule.js";
import type { EndpointRecord, IpcacheRecord, PolicyDiff, PolicyEntry } from "./types.js";

export interface EngineChange {
  policy: PolicyDiff;
  /** Endpoint records to write (new, or identity/enforcement/address changed) and endpoint ids to delete (their tables go with them). */
  endpoints: { upsert: EndpointRecord[]; remove: number[] };
  ipcache: { upsert: IpcacheRecord[]; remove: string[] };
  /** Policy entries the recomputation produced in total (the work done, not the diff). */
  entriesComputed: number;
}

export type RegenerationMode = "incremental" | "full";

interface EndpointState {
  input: EndpointInput;
  identity: Identity;
  record: EndpointRecord;
  entries: Map<string, PolicyEntry>;
  /** Incremental bookkeeping: the rules whose subject selects this endpoint. */
  rules: Set<Rule>;
}

interface RuleState {
  rule: Rule;
  /** Endpoints the subject selects. */
  selects: Set<number>;
  /** CIDR identities this rule holds a reference to. */
  cidrIdentities: number[];
}

interface CachedPeer {
  peer: Peer;
  ids: Set<number>;
  rules: Set<Rule>;
}

export class PolicyEngine {
  readonly allocator: IdentityAllocator;
  readonly mode: RegenerationMode;
  private readonly endpoints = new Map<number, EndpointState>();
  private readonly policies = new Map<string, PolicyDocument>();
  private readonly rules = new Map<Rule, RuleState>();
  private readonly peers = new Map<string, CachedPeer>();
  /** Prefixes of CIDR identities, and addresses of endpoints; for one prefix the endpoint wins, as Cilium's ipcache prefers the endpoint source. */
  private readonly cidrIpcache = new Map<string, { prefix: Prefix; identity: number }>();
  private readonly endpointIpcache = new Map<string, { prefix: Prefix; identity: number; endpoint: number }>();

  constructor(opts: { allocator?: IdentityAllocator; mode?: RegenerationMode } = {}) {
    this.allocator = opts.allocator ?? new LocalIdentityAllocator();
    this.mode = opts.mode ?? "incremental";
  }

  // ---- reading ----

  listPolicies(): PolicyDocument[] {
    return [...this.policies.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  allRules(): Rule[] {
    return [...this.rules.keys()];
  }

  listEndpoints(): { input: EndpointInput; record: EndpointRecord }[] {
    return [...this.endpoints.values()].sort((a, b) => a.input.id - b.input.id).map((e) => ({ input: e.input, record: e.record }));
  }

  endpoint(id: number): { input: EndpointInput; record: EndpointRecord; entries: PolicyEntry[] } | undefined {
    const e = this.endpoints.get(id);
    return e && { input: e.input, record: e.record, entries: sortEntries([...e.entries.values()]) };
  }

  policyEntries(id: number): PolicyEntry[] {
    return sortEntries([...(this.endpoints.get(id)?.entries.values() ?? [])]);
  }

  ipcache(): IpcacheRecord[] {
    const all = new Map<string, number>();
    for (const [k, v] of this.cidrIpcache) all.set(k, v.identity);
    for (const [k, v] of this.endpointIpcache) all.set(k, v.identity);
    return [...all].map(([cidr, identity]) => ({ cidr, identity })).sort((a, b) => (a.cidr < b.cidr ? -1 : a.cidr > b.cidr ? 1 : 0));
  }

  /** The identity an address resolves to (longest prefix; world when nothing matches), as the datapath does. */
  resolveAddress(address: string): { identity: number; prefix?: string; endpoint?: number } {
    const p = hostPrefix(address, "address");
    const items = [...this.cidrIpcache.values(), ...this.endpointIpcache.values()];
    const best = longestMatch(items, p);
    if (!best) return { identity: 2 };
    const ep = this.endpointIpcache.get(best.prefix.text);
    return ep ? { identity: ep.identity, prefix: best.prefix.text, endpoint: ep.endpoint } : { identity: best.identity, prefix: best.prefix.text };
  }

  /**
   * Everything the datapaths hold, as one change from empty tables: what a
   * fresh datapath (a replay, a restarted agent on new maps) is given.
   */
  snapshot(): EngineChange {
    const changes: PolicyDiff["changes"] = new Map();
    const records: EndpointRecord[] = [];
    for (const { record } of this.listEndpoints()) {
      records.push(record);
      const add = this.policyEntries(record.id);
      if (add.length) changes.set(record.id, { add, remove: [] });
    }
    return { policy: { recomputed: [], changes }, endpoints: { upsert: records, remove: [] }, ipcache: { upsert: this.ipcache(), remove: [] }, entriesComputed: 0 };
  }

  // ---- policies ----

  /** Adds the documents, replacing policies of the same name. */
  importPolicies(docs: PolicyDocument[]): EngineChange {
    const names = new Set<string>();
    for (const d of docs) {
      if (names.has(d.name)) throw new InvalidInputError(`policy ${d.name} appears twice in one import`);
      names.add(d.name);
    }
    const removed: Rule[] = [];
    const added: Rule[] = [];
    for (const d of docs) {
      const old = this.policies.get(d.name);
      if (old) removed.push(...old.rules);
      added.push(...d.rules);
    }
    const change = this.changeRules(added, removed);
    for (const d of docs) this.policies.set(d.name, d);
    return change;
  }

  /** Deletes the named policies; an unknown name fails before anything is deleted. */
  deletePolicies(names: string[]): EngineChange {
    const docs = [...new Set(names)].map((n) => {
      const d = this.policies.get(n) ?? this.policies.get(`default/${n}`);
      if (!d) throw new InvalidInputError(`policy ${n}: not found (have: ${[...this.policies.keys()].join(", ") || "none"})`);
      return d;
    });
    const unique = [...new Set(docs)];
    const change = this.changeRules([], unique.flatMap((d) => d.rules));
    for (const d of unique) this.policies.delete(d.name);
    return change;
  }

  deleteAllPolicies(): EngineChange {
    return this.deletePolicies([...this.policies.keys()]);
  }

  private changeRules(addedRules: Rule[], removedRules: Rule[]): EngineChange {
    // A document imported again as the same object keeps its rules: neither removed nor added.
    const kept = new Set(addedRules.filter((r) => removedRules.includes(r)));
    const added = addedRules.filter((r) => !kept.has(r));
    const removed = removedRules.filter((r) => !kept.has(r));
    const affected = new Set<number>();
    const created: Identity[] = [];
    const released: Identity[] = [];
    // New CIDR identities first, so a prefix both dropped and re-added never reaches zero references.
    const addedCidr = this.allocateAll(added.map((r) => rulePrefixes(r)), created);
    this.identitiesChanged(created, [], affected);
    added.forEach((r, i) => this.addRule(r, addedCidr[i]!, affected));
    for (const r of removed) {
      const st = this.rules.get(r)!;
      this.removeRule(r, affected);
      for (const id of st.cidrIdentities) {
        const gone = this.allocator.release(id);
        if (gone) released.push(gone);
      }
    }
    this.identitiesChanged([], released, affected);
    const ipTouched = new Set<string>([...created, ...released].map((i) => i.prefix!.text));
    const before = this.ipcacheAt(ipTouched);
    for (const i of created) this.cidrIpcache.set(i.prefix!.text, { prefix: i.prefix!, identity: i.id });
    for (const i of released) this.cidrIpcache.delete(i.prefix!.text);
    return this.regenerate(affected, { before, touched: ipTouched }, [], []);
  }

  /**
   * References to the CIDR identities of every rule's prefixes; the only step
   * of a rule change that can fail (an identity space exhausted, or a cluster
   * allocator's error). It runs before anything else changes, and on failure
   * releases what it took, so a refused change leaves the engine and the
   * allocator as they were.
   */
  private allocateAll(prefixesPerRule: Prefix[][], created: Identity[]): number[][] {
    const taken: number[] = [];
    try {
      return prefixesPerRule.map((prefixes) => prefixes.map((p) => {
        const a = this.allocator.allocateCidr(p);
        taken.push(a.identity.id);
        if (a.created) created.push(a.identity);
        return a.identity.id;
      }));
    } catch (err) {
      for (const id of taken.reverse()) this.allocator.release(id);
      created.length = 0;
      throw err;
    }
  }

  private addRule(rule: Rule, cidrIdentities: number[], affected: Set<number>): void {
    const selects = new Set<number>();
    for (const [id, ep] of this.endpoints) {
      if (rule.subject.matches(ep.input.labels)) {
        selects.add(id);
        ep.rules.add(rule);
        affected.add(id);
      }
    }
    this.rules.set(rule, { rule, selects, cidrIdentities });
    for (const s of rule.sections) {
      if (s.peers === "all") continue;
      for (const p of s.peers) {
        const k = peerKey(p);
        let c = this.peers.get(k);
        if (!c) {
          c = { peer: p, ids: new Set(), rules: new Set() };
          for (const identity of this.allocator.list()) if (peerMatches(p, identity)) c.ids.add(identity.id);
          this.peers.set(k, c);
        }
        c.rules.add(rule);
      }
    }
  }

  private removeRule(rule: Rule, affected: Set<number>): void {
    const st = this.rules.get(rule)!;
    for (const id of st.selects) {
      affected.add(id);
      this.endpoints.get(id)!.rules.delete(rule);
    }
    this.rules.delete(rule);
    for (const s of rule.sections) {
      if (s.peers === "all") continue;
      for (const p of s.peers) {
        const k = peerKey(p);
        const c = this.peers.get(k);
        if (!c) continue;
        c.rules.delete(rule);
        if (c.rules.size === 0) this.peers.delete(k);
      }
    }
  }

  /** Updates cached peer selections for identities that appeared or went, and marks the endpoints whose rules hold a peer that changed. */
  private identitiesChanged(created: Identity[], released: Identity[], affected: Set<number>): void {
    if (!created.length && !released.length) return;
    for (const c of this.peers.values()) {
      let changed = false;
      for (const i of created) if (peerMatches(c.peer, i)) { c.ids.add(i.id); changed = true; }
      for (const i of released) if (c.ids.delete(i.id)) changed = true;
      if (!changed) continue;
      for (const r of c.rules) for (const id of this.rules.get(r)!.selects) affected.add(id);
    }
  }

  /**
   * Identities that appeared or went outside this engine's allocator (other
   * nodes' pods, seen through the kvstore): the endpoints whose rules hold a
   * peer selecting one of them are regenerated, nobody else.
   */
  externalIdentitiesChanged(created: Identity[], released: Identity[]): EngineChange {
    const affected = new Set<number>();
    this.identitiesChanged(created, released, affected);
    return this.regenerate(affected, { before: new Map(), touched: new Set() }, [], []);
  }

  // ---- endpoints ----

  /** Adds an endpoint or replaces the one with its id. */
  upsertEndpoint(input: EndpointInput): EngineChange {
    for (const [id, ep] of this.endpoints) {
      if (id === input.id) continue;
      for (const fam of ["ipv4", "ipv6"] as const) {
        if (input[fam] !== undefined && ep.input[fam] !== undefined && hostPrefix(input[fam]!, fam).text === hostPrefix(ep.input[fam]!, fam).text) {
          throw new InvalidInputError(`endpoint ${input.id}: ${fam} ${input[fam]} is already endpoint ${id}'s`);
        }
      }
    }
    const affected = new Set<number>([input.id]);
    const old = this.endpoints.get(input.id);
    const alloc = this.allocator.allocate(input.labels);
    this.identitiesChanged(alloc.created ? [alloc.identity] : [], [], affected);
    const state: EndpointState = {
      input, identity: alloc.identity, entries: old?.entries ?? new Map(), rules: new Set(),
      record: { id: input.id, identity: alloc.identity.id, ipv4: input.ipv4, ipv6: input.ipv6, ifindex: input.ifindex, mac: input.mac, enforceIngress: false, enforceEgress: false },
    };
    if (old) {
      this.unselect(input.id);
      state.record.enforceIngress = old.record.enforceIngress;
      state.record.enforceEgress = old.record.enforceEgress;
    }
    this.endpoints.set(input.id, state);
    this.select(input.id, state);
    if (old) {
      const gone = this.allocator.release(old.identity.id);
      this.identitiesChanged([], gone ? [gone] : [], affected);
    }
    const touched = new Set<string>([...this.addressesOf(old?.input), ...this.addressesOf(input)].map((p) => p.text));
    const before = this.ipcacheAt(touched);
    for (const p of this.addressesOf(old?.input)) this.endpointIpcache.delete(p.text);
    for (const p of this.addressesOf(input)) this.endpointIpcache.set(p.text, { prefix: p, identity: alloc.identity.id, endpoint: input.id });
    const forceRecord = !old || !sameRecordFields(old.record, state.record);
    return this.regenerate(affected, { before, touched }, forceRecord ? [input.id] : [], []);
  }

  removeEndpoint(id: number): EngineChange {
    const ep = this.endpoints.get(id);
    if (!ep) throw new InvalidInputError(`endpoint ${id}: not found`);
    const affected = new Set<number>();
    this.unselect(id);
    this.endpoints.delete(id);
    const gone = this.allocator.release(ep.identity.id);
    this.identitiesChanged([], gone ? [gone] : [], affected);
    affected.delete(id);
    const touched = new Set(this.addressesOf(ep.input).map((p) => p.text));
    const before = this.ipcacheAt(touched);
    for (const t of touched) this.endpointIpcache.delete(t);
    return this.regenerate(affected, { before, touched }, [], [id]);
  }

  private select(id: number, ep: EndpointState): void {
    for (const st of this.rules.values()) {
      if (st.rule.subject.matches(ep.input.labels)) {
        st.selects.add(id);
        ep.rules.add(st.rule);
      }
    }
  }

  private unselect(id: number): void {
    const ep = this.endpoints.get(id)!;
    for (const r of ep.rules) this.rules.get(r)!.selects.delete(id);
    ep.rules.clear();
  }

  private addressesOf(input: EndpointInput | undefined): Prefix[] {
    if (!input) return [];
    const out: Prefix[] = [];
    if (input.ipv4 !== undefined) out.push(hostPrefix(input.ipv4, "ipv4"));
    if (input.ipv6 !== undefined) out.push(hostPrefix(input.ipv6, "ipv6"));
    return out;
  }

  // ---- regeneration ----

  /** Recomputes every endpoint from scratch (fresh rule selection and peer sets), writing only what differs. */
  fullRecompute(): EngineChange {
    return this.regenerate(new Set(this.endpoints.keys()), { before: new Map(), touched: new Set() }, [], [], true);
  }

  /** Every endpoint's policy computed from scratch, changing nothing: the reference the incremental state must equal. */
  computeFresh(): Map<number, ComputedPolicy> {
    const memo = new Map<string, number[]>();
    const identities = this.allocator.list();
    const selected = (p: Peer) => {
      const k = peerKey(p);
      let ids = memo.get(k);
      if (!ids) memo.set(k, (ids = identities.filter((i) => peerMatches(p, i)).map((i) => i.id)));
      return ids;
    };
    const rules = [...this.rules.keys()];
    const out = new Map<number, ComputedPolicy>();
    for (const [id, ep] of this.endpoints) out.set(id, computePolicy(rulesSelecting(rules, ep.input.labels), selected));
    return out;
  }

  private computeCached(ep: EndpointState): ComputedPolicy {
    return computePolicy(ep.rules, (p) => this.peers.get(peerKey(p))!.ids);
  }

  private regenerate(
    affected: Set<number>,
    ip: { before: Map<string, number | undefined>; touched: Set<string> },
    forceRecords: number[],
    removedEndpoints: number[],
    fresh = this.mode === "full",
  ): EngineChange {
    const ids = fresh ? [...this.endpoints.keys()] : [...affected].filter((id) => this.endpoints.has(id));
    ids.sort((a, b) => a - b);
    const computed = fresh ? this.computeFresh() : undefined;
    const changes: PolicyDiff["changes"] = new Map();
    const upsert = new Set(forceRecords);
    let entriesComputed = 0;
    for (const id of ids) {
      const ep = this.endpoints.get(id)!;
      const c = computed ? computed.get(id)! : this.computeCached(ep);
      entriesComputed += c.entries.size;
      const add: PolicyEntry[] = [];
      const remove: PolicyEntry[] = [];
      for (const [k, e] of c.entries) {
        const prev = ep.entries.get(k);
        if (!prev) add.push(e);
        else if (prev.deny !== e.deny) { remove.push(prev); add.push(e); }
      }
      for (const [k, e] of ep.entries) if (!c.entries.has(k)) remove.push(e);
      if (add.length || remove.length) changes.set(id, { add: sortEntries(add), remove: sortEntries(remove) });
      ep.entries = c.entries;
      if (ep.record.enforceIngress !== c.enforce.ingress || ep.record.enforceEgress !== c.enforce.egress) {
        ep.record = { ...ep.record, enforceIngress: c.enforce.ingress, enforceEgress: c.enforce.egress };
        upsert.add(id);
      }
    }
    const after = this.ipcacheAt(ip.touched);
    const ipUpsert: IpcacheRecord[] = [];
    const ipRemove: string[] = [];
    for (const cidr of ip.touched) {
      const a = after.get(cidr), b = ip.before.get(cidr);
      if (a === b) continue;
      if (a === undefined) ipRemove.push(cidr);
      else ipUpsert.push({ cidr, identity: a });
    }
    return {
      policy: { recomputed: ids, changes },
      endpoints: {
        upsert: [...upsert].filter((id) => this.endpoints.has(id)).sort((a, b) => a - b).map((id) => this.endpoints.get(id)!.record),
        remove: removedEndpoints,
      },
      ipcache: { upsert: ipUpsert.sort(byCidr), remove: ipRemove.sort() },
      entriesComputed,
    };
  }

  private ipcacheAt(prefixes: Set<string>): Map<string, number | undefined> {
    const out = new Map<string, number | undefined>();
    for (const p of prefixes) out.set(p, this.endpointIpcache.get(p)?.identity ?? this.cidrIpcache.get(p)?.identity);
    return out;
  }

  /** Identity of a label set if allocated (for trace). */
  identityOf(labels: LabelSet): Identity | undefined {
    return this.allocator.byLabels(labels);
  }
}

function sameRecordFields(a: EndpointRecord, b: EndpointRecord): boolean {
  return a.identity === b.identity && a.ipv4 === b.ipv4 && a.ipv6 === b.ipv6 && a.ifindex === b.ifindex && a.mac === b.mac;
}

function byCidr(a: IpcacheRecord, b: IpcacheRecord): number {
  return a.cidr < b.cidr ? -1 : a.cidr > b.cidr ? 1 : 0;
}

const DIR_ORDER = { ingress: 0, egress: 1 };
export function sortEntries(entries: PolicyEntry[]): PolicyEntry[] {
  return entries.sort((a, b) => DIR_ORDER[a.direction] - DIR_ORDER[b.direction] || a.identity - b.identity || a.port - b.port || a.proto - b.proto || Number(a.deny) - Number(b.deny));
}

export { entryKey };
