/**
 * The operator's bookkeeping while it leads: what the manifests, node keys
 * and identity node keys say (fed by list-then-watch), which slim records
 * each source (a pod, a service, a policy, a node) derives, and the writes
 * that bring the store there. Work is per source: an event marks the
 * sources it affects dirty and only those are recomputed; a record is
 * written only when its slim encoding changed (ChangeFilter), so an
 * annotation or status-only edit ends here with no write.
 *
 * Every write is one transaction guarded by the leader lock's fencing
 * compare: a leader that lost its lock (lease expired while it was paused,
 * partitioned...) has its writes refused by the store, whatever it believes.
 */
import { MembraneError } from "../errors.js";
import { DEFAULT_CLUSTER, keys, parseStateKey } from "../kvstore/keys.js";
import { ChangeFilter } from "../kvstore/records/change-filter.js";
import { decodeRecord } from "../kvstore/records/codec.js";
import type { IdentityValueRecord } from "../kvstore/records/identity.js";
import type { NodeRecord } from "../kvstore/records/node.js";
import type { KeyValue, KvStore, Lock, TxnOp, WatchEvent } from "../kvstore/store.js";
import { MAX_TXN_OPS } from "./apply.js";
import { localPodRecord, nodeRecord, podRecords, policyRecord, serviceRecord, type DesiredRecords } from "./convert.js";
import { decodeManifest, manifestKey, MANIFEST_ROOT } from "./manifest-store.js";
import type { EndpointsManifest, Manifest, PodManifest, ServiceManifest } from "./manifests/kinds.js";
import { podIdentityLabels } from "./pod-identity.js";

/** The store refused a write guarded by the leader lock: another operator leads now. */
export class LeadershipLostError extends MembraneError {
  constructor(message: string) {
    super("LEADERSHIP_LOST", message);
  }
}

interface NodeState {
  record: NodeRecord | undefined;
  /** Registered by the node's agent under its lease: the agent's key, never written or deleted here. */
  leased: boolean;
}

interface PendingOp {
  op: TxnOp;
  source: string;
  line: string;
}

export interface ReconcilerStats {
  puts: number;
  deletes: number;
  txns: number;
}

/** Prefixes of the records the operator writes (node records only when no agent holds them). */
export function ownedPrefixes(cluster: string): string[] {
  return [keys.endpoints(), keys.ipcacheAll(), keys.services(), keys.policies(), keys.pods(), keys.nodes(cluster)];
}

const sourceOfManifest = (m: Manifest, key: string): string[] => {
  switch (m.kind) {
    case "Pod":
      return [`pod:${key}`];
    case "Node":
      return [`node:${m.name}`];
    case "Service":
      return [`svc:${m.namespace}/${m.name}`];
    case "EndpointSlice":
    case "Endpoints":
      return [`svc:${m.namespace}/${m.serviceName}`];
    default:
      return [`pol:${key}`];
  }
};

/**
 * Nodes whose agent registered itself under a lease, remembered in the store
 * so a restarted or new leader does not write such a node's record from its
 * manifest after the agent died (its lease ending is how the node leaves).
 */
export function agentNodesPrefix(cluster: string): string {
  return `membrane/operator/v1/agent-nodes/${encodeURIComponent(cluster)}/`;
}

export class Reconciler {
  readonly stats: ReconcilerStats = { puts: 0, deletes: 0, txns: 0 };
  private readonly manifests = new Map<string, Manifest>();
  private readonly podsByNode = new Map<string, Set<string>>();
  private readonly podLabels = new Map<string, string>();
  private readonly slicesByService = new Map<string, Set<string>>();
  private readonly nodes = new Map<string, NodeState>();
  private readonly everLeased = new Set<string>();
  /** `<labels>\n<node>` -> identity ID, from the node keys agents write. */
  private readonly identities = new Map<string, number>();
  private filter = new ChangeFilter();
  private readonly owned = new Map<string, Set<string>>();
  private readonly ownerOf = new Map<string, string>();
  readonly dirty = new Set<string>();
  /** Writes not derived from a source (agent-node markers), flushed with the next step. */
  private readonly extra: PendingOp[] = [];

  constructor(
    private readonly store: KvStore,
    private readonly lock: Lock,
    private readonly log: (line: string) => void,
    private readonly cluster: string = DEFAULT_CLUSTER,
  ) {}

  // ------------------------------------------------------------ inputs

  /** The agent-node markers found at start (see agentNodesPrefix). */
  seedAgentNodes(kvs: readonly KeyValue[]): void {
    const prefix = agentNodesPrefix(this.cluster);
    for (const kv of kvs) if (kv.key.startsWith(prefix)) this.everLeased.add(decodeURIComponent(kv.key.slice(prefix.length)));
  }

  /** A full listing of one followed prefix (at start, or after a watch had to re-list): events for what changed. */
  reset(prefix: string, kvs: readonly KeyValue[]): void {
    const listed = new Set(kvs.map((kv) => kv.key));
    for (const key of this.knownKeys(prefix)) if (!listed.has(key)) this.apply(prefix, { type: "delete", key });
    for (const kv of kvs) this.apply(prefix, { type: "put", key: kv.key, value: kv.value, lease: kv.lease });
  }

  event(prefix: string, ev: WatchEvent): void {
    this.apply(prefix, ev.type === "put" ? { type: "put", key: ev.kv.key, value: ev.kv.value, lease: ev.kv.lease } : { type: "delete", key: ev.kv.key });
  }

  private knownKeys(prefix: string): string[] {
    if (prefix === MANIFEST_ROOT) return [...this.manifests.keys()];
    if (prefix === keys.nodes(this.cluster)) return [...this.nodes.keys()].map((n) => keys.node(this.cluster, n));
    return [...this.identities.keys()].map((k) => {
      const [labels, node] = k.split("\n");
      return keys.identityValue(labels!, node!);
    });
  }

  private apply(prefix: string, ch: { type: "put" | "delete"; key: string; value?: string; lease?: string }): void {
    try {
      if (prefix === MANIFEST_ROOT) this.manifestChanged(ch.key, ch.type === "put" ? decodeManifest(ch.key, ch.value!) : undefined);
      else if (prefix === keys.nodes(this.cluster)) this.nodeChanged(ch);
      else this.identityChanged(ch);
    } catch (err) {
      this.log(`skip ${ch.key}: ${(err as Error).message}`);
    }
  }

  private index<K>(map: Map<K, Set<string>>, k: K, v: string, add: boolean): void {
    let set = map.get(k);
    if (add) {
      if (!set) map.set(k, (set = new Set()));
      set.add(v);
    } else if (set) {
      set.delete(v);
      if (set.size === 0) map.delete(k);
    }
  }

  private manifestChanged(key: string, m: Manifest | undefined): void {
    const old = this.manifests.get(key);
    if (old) {
      for (const s of sourceOfManifest(old, key)) this.dirty.add(s);
      if (old.kind === "Pod") this.index(this.podsByNode, old.nodeName, key, false);
      if (old.kind === "EndpointSlice" || old.kind === "Endpoints") this.index(this.slicesByService, `${old.namespace}/${old.serviceName}`, key, false);
      this.manifests.delete(key);
      this.podLabels.delete(key);
    }
    if (!m) return;
    this.manifests.set(key, m);
    for (const s of sourceOfManifest(m, key)) this.dirty.add(s);
    if (m.kind === "Pod") {
      this.index(this.podsByNode, m.nodeName, key, true);
      this.podLabels.set(key, podIdentityLabels(m).id);
    }
    if (m.kind === "EndpointSlice" || m.kind === "Endpoints") this.index(this.slicesByService, `${m.namespace}/${m.serviceName}`, key, true);
  }

  private nodeChanged(ch: { type: "put" | "delete"; key: string; value?: string; lease?: string }): void {
    const name = parseStateKey(ch.key).path[1]!;
    const before = this.nodes.get(name);
    if (ch.type === "delete") {
      this.nodes.delete(name);
      // Deleted under us (or by our own delete): the next derive must write it again if still wanted.
      this.filter.forget(ch.key);
      if (before?.leased) this.log(`node ${name}: its lease ended; collecting the records of its pods`);
      this.dirty.add(`node:${name}`);
    } else {
      const leased = ch.lease !== undefined && ch.lease !== "" && ch.lease !== "0";
      let record: NodeRecord | undefined;
      try {
        record = decodeRecord(ch.key, ch.value!).record as NodeRecord;
      } catch (err) {
        this.log(`node ${name}: unreadable record (${(err as Error).message}); its pods get no records`);
      }
      this.nodes.set(name, { record, leased });
      if (leased && !this.everLeased.has(name)) {
        this.everLeased.add(name);
        const marker = `${agentNodesPrefix(this.cluster)}${encodeURIComponent(name)}`;
        this.extra.push({ op: { type: "put", key: marker, value: "{}" }, source: `node:${name}`, line: `put ${marker} (node ${name} is registered by its agent)` });
        // The agent's key now: stop owning it without deleting it.
        this.release(`node:${name}`);
      }
    }
    for (const pod of this.podsByNode.get(name) ?? []) this.dirty.add(`pod:${pod}`);
  }

  private identityChanged(ch: { type: "put" | "delete"; key: string; value?: string }): void {
    const parsed = parseStateKey(ch.key);
    if (parsed.kind !== "identities" || parsed.path[0] !== "value" || parsed.path.length !== 3) return;
    const [, labels, node] = parsed.path as [string, string, string];
    const id = `${labels}\n${node}`;
    if (ch.type === "delete") this.identities.delete(id);
    else this.identities.set(id, (decodeRecord(ch.key, ch.value!).record as IdentityValueRecord).id);
    for (const pod of this.podsByNode.get(node) ?? []) if (this.podLabels.get(pod) === labels) this.dirty.add(`pod:${pod}`);
  }

  /** Every source there is, for a full reconcile. */
  markAll(): void {
    for (const [key, m] of this.manifests) for (const s of sourceOfManifest(m, key)) this.dirty.add(s);
    for (const s of this.owned.keys()) this.dirty.add(s);
  }

  // ------------------------------------------------------------ desired state

  private desired(source: string): DesiredRecords {
    const out: DesiredRecords = new Map();
    const colon = source.indexOf(":");
    const kind = source.slice(0, colon);
    const id = source.slice(colon + 1);
    if (kind === "pod") {
      const pod = this.manifests.get(id) as PodManifest | undefined;
      if (!pod) return out;
      const local = localPodRecord(pod, this.cluster);
      out.set(local.key, local.record);
      const node = this.nodes.get(pod.nodeName)?.record;
      const identity = this.identities.get(`${this.podLabels.get(id)}\n${pod.nodeName}`);
      // Until its node is up and its agent allocated the identity there, a pod has only its record for that agent.
      if (!node || identity === undefined) return out;
      for (const [key, record] of podRecords(pod, identity, node, this.cluster)) out.set(key, record);
      return out;
    }
    if (kind === "svc") {
      const [namespace, name] = id.split("/") as [string, string];
      const service = this.manifests.get(manifestKey({ kind: "Service", namespace, name, clusterIps: [], ports: [] })) as ServiceManifest | undefined;
      if (!service) return out;
      const slices = [...(this.slicesByService.get(id) ?? [])].sort().map((k) => this.manifests.get(k) as EndpointsManifest);
      const svc = serviceRecord(service, slices, this.cluster);
      if (svc) out.set(svc.key, svc.record);
      return out;
    }
    if (kind === "pol") {
      const m = this.manifests.get(id);
      if (m && (m.kind === "NetworkPolicy" || m.kind === "CiliumNetworkPolicy" || m.kind === "CiliumClusterwideNetworkPolicy")) {
        const p = policyRecord(m);
        out.set(p.key, p.record);
      }
      return out;
    }
    // node: only while no agent registered it.
    const m = this.manifests.get(manifestKey({ kind: "Node", name: id, labels: {}, addresses: {}, podCidrs: [] }));
    if (m?.kind === "Node" && !this.everLeased.has(id) && !this.nodes.get(id)?.leased) {
      const n = nodeRecord(m, this.cluster);
      out.set(n.key, n.record);
    }
    return out;
  }

  /** Gives up a source's keys without deleting them (they now belong to an agent). */
  private release(source: string): void {
    for (const key of this.owned.get(source) ?? []) {
      this.ownerOf.delete(key);
      this.filter.forget(key);
    }
    this.owned.delete(source);
  }

  /** The writes that bring one source's records to what it derives now. */
  private plan(source: string): PendingOp[] {
    const ops: PendingOp[] = [];
    let want: DesiredRecords;
    try {
      want = this.desired(source);
    } catch (err) {
      this.log(`convert ${source}: ${(err as Error).message}; its records are removed`);
      want = new Map();
    }
    const before = this.owned.get(source) ?? new Set<string>();
    const now = new Set<string>();
    for (const [key, input] of want) {
      const owner = this.ownerOf.get(key);
      if (owner !== undefined && owner !== source) {
        this.log(`conflict: ${key} is derived from ${owner} and from ${source}; keeping ${owner}'s`);
        continue;
      }
      let value: string | undefined;
      try {
        value = this.filter.encode(key, input);
      } catch (err) {
        this.log(`convert ${source}: ${key}: ${(err as Error).message}; not written`);
        continue;
      }
      now.add(key);
      this.ownerOf.set(key, source);
      if (value !== undefined) ops.push({ op: { type: "put", key, value }, source, line: `put ${key} (${source})` });
    }
    for (const key of before) {
      if (now.has(key)) continue;
      this.ownerOf.delete(key);
      this.filter.forget(key);
      ops.push({ op: { type: "delete", key }, source, line: `delete ${key} (${source} no longer derives it)` });
    }
    if (now.size === 0) this.owned.delete(source);
    else this.owned.set(source, now);
    return ops;
  }

  // ------------------------------------------------------------ writing

  /** Recomputes the dirty sources and writes the changes. */
  async step(): Promise<number> {
    const batch = [...this.dirty].sort();
    this.dirty.clear();
    const ops = [...this.extra.splice(0), ...batch.flatMap((s) => this.plan(s))];
    await this.flush(ops);
    return ops.length;
  }

  /** Pending writes or dirty sources left. */
  get pending(): boolean {
    return this.dirty.size > 0 || this.extra.length > 0;
  }

  /**
   * Start of leadership, or after a failed write: what the store holds under
   * the operator's prefixes is read again (the filter is seeded with it, so
   * unchanged records are not rewritten), every source is recomputed, and
   * records no source derives any more are deleted.
   */
  async fullSync(): Promise<number> {
    this.filter = new ChangeFilter();
    this.owned.clear();
    this.ownerOf.clear();
    const stored = new Set<string>();
    for (const prefix of ownedPrefixes(this.cluster)) {
      for (const kv of (await this.store.list(prefix)).kvs) {
        if (kv.lease !== undefined && prefix === keys.nodes(this.cluster)) continue; // an agent's registration
        stored.add(kv.key);
        try {
          this.filter.seed(kv.key, kv.value);
        } catch {
          // unreadable: rewritten if derived, deleted otherwise
        }
      }
    }
    this.markAll();
    const batch = [...this.dirty].sort();
    this.dirty.clear();
    const ops = [...this.extra.splice(0), ...batch.flatMap((s) => this.plan(s))];
    for (const key of stored) {
      if (!this.ownerOf.has(key)) ops.push({ op: { type: "delete", key }, source: "-", line: `delete ${key} (derived from nothing that exists)` });
    }
    await this.flush(ops);
    return ops.length;
  }

  private async flush(ops: PendingOp[]): Promise<void> {
    for (let i = 0; i < ops.length; i += MAX_TXN_OPS) {
      const chunk = ops.slice(i, i + MAX_TXN_OPS);
      const result = await this.store.txn({ compare: [this.lock.guard()], success: chunk.map((p) => p.op) });
      if (!result.succeeded) {
        throw new LeadershipLostError(`lost the operator lock (fencing token ${this.lock.fencingToken}): ${chunk.length} write(s) refused`);
      }
      this.stats.txns++;
      for (const p of chunk) {
        if (p.op.type === "put") this.stats.puts++;
        else this.stats.deletes++;
        this.log(`${p.line} @${result.revision}`);
      }
    }
  }
}
