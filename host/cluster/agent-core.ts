/**
 * The agent's cluster loop, without a datapath: it registers its node under
 * a lease, follows the prefixes it needs (list, then watch) and turns what
 * they say into datapath changes handed to a DatapathSink:
 * - its local pods (the pod records the operator writes under this node) get cluster
 *   identities (allocated on the kvstore, under the node's lease) and become
 *   policy-engine endpoints; the operator then writes their endpoint and
 *   ipcache records (host/operator/convert.ts: agents allocate, the operator
 *   writes records);
 * - identity master keys make other nodes' identities known to the engine,
 *   so rules select remote peers;
 * - ipcache records of remote pods become ipcache entries and routes toward
 *   their node (with the node records' pod CIDRs);
 * - service records become LB ServiceSpecs, diffed per record;
 * - policy records go through the incremental engine: only the endpoints a
 *   change selects regenerate.
 *
 * Events only mark what is dirty; one round at a time recomputes the dirty
 * parts and applies them, so a burst (the first list, a resync) costs one
 * datapath change per kind, not one per record.
 *
 * While the kvstore is unreachable nothing here touches the tables (the
 * datapath keeps forwarding with them); KvstoreHealth reconnects with
 * growing, jittered delays and, once back, every reflector re-lists and
 * diffs, so the tables converge to exactly what the store says.
 *
 * The simulator (issue 16) runs this same class with NULL_SINK.
 */
import { wrap } from "../errors.js";
import type { LabelSet } from "../identity/labels.js";
import type { Allocation, Identity, IdentityAllocator } from "../identity/allocator.js";
import type { Prefix } from "../packet/cidr.js";
import type { BackoffOptions } from "../kvstore/backoff.js";
import { backoffDuration } from "../kvstore/backoff.js";
import { DisciplinedKvStore } from "../kvstore/disciplined-store.js";
import { ClusterIdentityAllocator } from "../kvstore/identities.js";
import { DEFAULT_CLUSTER, keys, parseStateKey } from "../kvstore/keys.js";
import { KvstoreIdentityAllocator } from "../kvstore/kvstore-identity-allocator.js";
import { Reflector } from "../kvstore/reflector.js";
import type { PageGate } from "../kvstore/paged-list.js";
import type { IpcacheRecord } from "../kvstore/records/ipcache.js";
import type { NodeAddress, NodeRecord } from "../kvstore/records/node.js";
import type { ServiceRecord } from "../kvstore/records/service.js";
import { retryInPlace, runSteps } from "../kvstore/retry-in-place.js";
import type { KeyValue, KvStore, Lease } from "../kvstore/store.js";
import type { Metrics } from "../metrics/registry.js";
import type { PodRecord } from "../kvstore/records/pod.js";
import { podIdentityLabels } from "../operator/pod-identity.js";
import { PolicyEngine, type EngineChange, type RegenerationMode } from "../policy/engine.js";
import { MAX_ENDPOINT_ID } from "../policy/endpoint.js";
import type { ServiceFrontend, ServiceSpec } from "../lb/manager.js";
import {
  decodeIdentityMaster,
  decodeIpcache,
  decodeNode,
  sameNodeRecord,
  decodePolicy,
  decodeService,
  identityIdOfKey,
  localPodDecoder,
  type PolicyItem,
} from "./cluster-records.js";
import { ipcacheOnlyChange, isEmptyChange, type DatapathSink } from "./datapath-sink.js";
import { ClusterIdentityView } from "./identity-view.js";
import { KvstoreHealth } from "./kvstore-health.js";
import { RouteTable } from "./route-table.js";
import { peersFromNodes } from "./encryption-peers.js";
import type { Route } from "./routes.js";
import { ServiceTable } from "./services.js";

/**
 * The node lease's TTL by default: 15 minutes, as Cilium 1.5 (it was 15 s).
 * A lease must outlive a loaded machine's late keep-alives: with 15 s,
 * agents starved of CPU (hundreds per process in the simulator, or one
 * busy node) lost their leases and their node keys with them, and every
 * re-registration was another write for all the others to receive. The
 * price: a node whose agent died keeps its node key (and the identity keys
 * under its lease) for up to 15 minutes.
 */
export const DEFAULT_NODE_LEASE_TTL_SECONDS = 900;

export interface ClusterAgentOptions {
  store: KvStore;
  node: string;
  cluster?: string;
  addresses: NodeAddress[];
  ipv4AllocCidr?: string;
  ipv6AllocCidr?: string;
  /** IPsec key index (SPI) this node sends with; 0: no encryption. */
  encryptionKey?: number;
  /** Encryption on: other nodes' pod CIDRs are routed into this device (the TUN, where the ESP path seals them; routes.ts). */
  encryptInto?: string;
  sink: DatapathSink;
  /** Node lease TTL in seconds (default DEFAULT_NODE_LEASE_TTL_SECONDS, 900). */
  leaseTtlSeconds?: number;
  /** Reconnects, failed bootstrap steps and failed watches (default min 1 s, max 30 s, jitter, scaled by ln(1 + nodes)). */
  backoff?: BackoffOptions;
  /** Keys per list page of the reflectors (default paged-list.ts's). */
  listPageSize?: number;
  /** A queue of list pages shared with other agents (the simulator's). */
  listGate?: PageGate;
  /** Check the store after this long without an event (default 5 s). */
  healthIdleMs?: number;
  mode?: RegenerationMode;
  /**
   * The ids a previous agent gave its endpoints, by address (a datapath
   * that outlives the agent, such as pinned BPF maps, keeps them): a pod
   * with one of these addresses gets its id again, and new pods are numbered
   * around them, so a restart does not renumber endpoints whose records and
   * programs are still in place.
   */
  previousEndpointIds?: ReadonlyMap<string, number>;
  /** The pod's device on this node, read when its endpoint is made (host-side ifindex, pod-side MAC); undefined: 0 and a zero MAC. */
  endpointDevice?: (pod: string) => { ifindex: number; mac: string } | undefined;
  metrics?: Metrics;
  log?: (line: string) => void;
}

type Kind = "nodes" | "identities" | "ipcache" | "services" | "policies" | "pods";

interface LocalEndpoint {
  id: number;
  labels: LabelSet;
  ipv4?: string;
  ipv6?: string;
}

export interface AgentCounters {
  regenerations: number;
  regenerationFailures: number;
  datapathChanges: number;
  rounds: number;
  events: number;
}

export class ClusterAgentCore {
  readonly engine: PolicyEngine;
  readonly identities: ClusterIdentityView;
  readonly counters: AgentCounters = { regenerations: 0, regenerationFailures: 0, datapathChanges: 0, rounds: 0, events: 0 };
  readonly cluster: string;
  private readonly log: (line: string) => void;
  private readonly backoff: BackoffOptions;
  private lease?: Lease;
  private clusterAllocator?: ClusterIdentityAllocator;
  private kvAllocator?: KvstoreIdentityAllocator;
  private readonly abort = new AbortController();
  private health?: KvstoreHealth;
  private stopped = false;

  readonly nodes: Reflector<NodeRecord>;
  readonly identityMasters: Reflector<Identity>;
  readonly ipcache: Reflector<IpcacheRecord>;
  readonly services: Reflector<ServiceRecord>;
  readonly policies: Reflector<PolicyItem>;
  readonly pods: Reflector<PodRecord>;
  private readonly reflectors: Reflector<unknown>[];

  private readonly dirty: Record<Kind, Set<string>> = {
    nodes: new Set(), identities: new Set(), ipcache: new Set(), services: new Set(), policies: new Set(), pods: new Set(),
  };
  private dirtySince = 0;
  private scheduled = false;
  private work: Promise<void> = Promise.resolve();
  private lastEventAt = 0;

  private readonly serviceTable = new ServiceTable();
  private readonly routes: RouteTable;
  /** ipcache key -> the remote entry applied. */
  private readonly remoteIpcache = new Map<string, { cidr: string; identity: number }>();
  private readonly local = new Map<string, LocalEndpoint>();
  private readonly localPrefixes = new Set<string>();
  private readonly usedIds = new Set<number>();
  private readonly previousIds: ReadonlyMap<string, number>;
  private readonly reservedIds: ReadonlySet<number>;
  private readonly policyNames = new Map<string, string>();
  private bootstrapSeconds?: number;
  /** The ESP peers the sink last took (JSON), when encrypting: sent again only when the node records change them. */
  private appliedPeers = "";

  constructor(private readonly options: ClusterAgentOptions) {
    this.cluster = options.cluster ?? DEFAULT_CLUSTER;
    this.log = options.log ?? (() => {});
    this.previousIds = options.previousEndpointIds ?? new Map();
    this.routes = new RouteTable(options.node, { encryptInto: options.encryptInto });
    this.reservedIds = new Set(this.previousIds.values());
    this.backoff = { minMs: 1000, maxMs: 30_000, ...options.backoff, nodes: options.backoff?.nodes ?? (() => this.nodes.records.size) };
    this.identities = new ClusterIdentityView(new LazyAllocator(() => this.kvAllocator));
    this.engine = new PolicyEngine({ allocator: this.identities, mode: options.mode });
    // `sameRecord`: a put that leaves the decoded record as it was is an event, not a change (no round).
    const reflect = <T>(kind: Kind, prefix: string, decode: (kv: KeyValue) => T, sameRecord?: (a: T, b: T) => boolean) =>
      new Reflector<T>(options.store, prefix, {
        decode,
        backoffMs: (failures) => backoffDuration(failures, this.backoff),
        pageSize: options.listPageSize,
        gate: options.listGate,
        handlers: {
          upsert: (key, value, prev) => (prev !== undefined && sameRecord?.(prev, value) ? this.noteEvent() : this.mark(kind, key)),
          delete: (key) => this.mark(kind, key),
          problem: (message) => this.log(`kvstore ${kind}: ${message}`),
        },
      });
    // A node record put again unchanged (its agent re-registered under a new lease, a periodic resync) would
    // otherwise rebuild every route: with thousands of nodes re-registering at once (a mass restart) that was
    // most of a 5,000-agent simulation's CPU (docs/scale.md).
    this.nodes = reflect("nodes", keys.nodes(this.cluster), decodeNode, sameNodeRecord);
    this.identityMasters = reflect("identities", keys.identityMasters(), decodeIdentityMaster);
    this.ipcache = reflect("ipcache", keys.ipcacheAll(), decodeIpcache);
    this.services = reflect("services", keys.services(), decodeService);
    this.policies = reflect("policies", keys.policies(), decodePolicy);
    this.pods = reflect("pods", keys.nodePods(this.cluster, options.node), localPodDecoder(options.node));
    this.reflectors = [this.nodes, this.identityMasters, this.ipcache, this.services, this.policies, this.pods] as Reflector<unknown>[];
  }

  get node(): string {
    return this.options.node;
  }

  /** Bootstrap: each step retried in place with backoff and jitter until it succeeds (or stop()). */
  async start(): Promise<void> {
    const started = performance.now();
    const { store } = this.options;
    const timedStep = (name: string, run: () => Promise<unknown>) => ({
      name,
      run: async () => {
        const t0 = performance.now();
        try {
          const r = await run();
          this.options.metrics?.agentBootstrap.observe({ scope: name, outcome: "success" }, (performance.now() - t0) / 1000);
          return r;
        } catch (err) {
          this.options.metrics?.agentBootstrap.observe({ scope: name, outcome: "fail" }, (performance.now() - t0) / 1000);
          throw err;
        }
      },
    });
    await runSteps(
      [
        timedStep("reach the kvstore", () => store.revision()),
        timedStep("grant the node lease", async () => {
          this.lease = await store.grantLease(this.options.leaseTtlSeconds ?? DEFAULT_NODE_LEASE_TTL_SECONDS);
          this.lease.onLost((err) => this.leaseLost(err));
          this.clusterAllocator = new ClusterIdentityAllocator(store, {
            node: this.options.node,
            lease: this.lease,
            // the masters reflector's mirror, once synced: a new identity then costs no list of every master
            knownMasters: () => (this.identityMasters.hasSynced ? [...this.identityMasters.records.values()].map((m) => ({ id: m.id, labels: m.labels.id })) : undefined),
          });
          this.kvAllocator = new KvstoreIdentityAllocator(this.clusterAllocator, (err) => this.log(`identity release: ${(err as Error).message}`));
        }),
        timedStep("register the node", () => this.register()),
        timedStep("list and watch cluster state", () => Promise.all(this.reflectors.map((r) => r.start()))),
        timedStep("apply the cluster state", () => this.settled()),
      ],
      {
        backoff: this.backoff,
        signal: this.abort.signal,
        onRetry: ({ step, attempt, waitMs, error }) =>
          this.log(`bootstrap: ${step} failed (${(error as Error).message}); retrying in ${(waitMs / 1000).toFixed(2)} s (attempt ${attempt})`),
      },
    );
    this.bootstrapSeconds = (performance.now() - started) / 1000;
    this.options.metrics?.agentBootstrap.observe({ scope: "overall", outcome: "success" }, this.bootstrapSeconds);
    // Checks go to the backend itself: the disciplined client would retry each one with its own backoff first.
    this.health = new KvstoreHealth(store instanceof DisciplinedKvStore ? store.inner : store, {
      idleMs: this.options.healthIdleMs,
      backoff: this.backoff,
      lastEventAge: () => this.lastEventAge(),
      log: this.log,
      onRecovered: () => this.resync(),
    });
    this.health.start();
    this.log(`node ${this.options.node} joined cluster ${this.cluster} in ${this.bootstrapSeconds.toFixed(2)} s`);
  }

  private nodeRecord(): NodeRecord {
    const o = this.options;
    const r: NodeRecord = { name: o.node, cluster: this.cluster, addresses: o.addresses, encryptionKey: o.encryptionKey ?? 0 };
    if (o.ipv4AllocCidr) r.ipv4AllocCidr = o.ipv4AllocCidr;
    if (o.ipv6AllocCidr) r.ipv6AllocCidr = o.ipv6AllocCidr;
    return r;
  }

  /** Advertises a new IPsec key index in this node's record (encryption-sync.ts: only once the key is installed). */
  async setEncryptionKey(keyIndex: number): Promise<void> {
    this.options.encryptionKey = keyIndex;
    // Before the bootstrap registered the node, its first record carries the key.
    if (this.lease) await this.register();
  }

  private async register(): Promise<void> {
    await this.options.store.put(keys.node(this.cluster, this.options.node), JSON.stringify(this.nodeRecord()), { lease: this.lease!.id });
  }

  /**
   * The lease expired (the store was away longer than its TTL, or it was
   * revoked): a new lease, the node key again, and this node's identity keys
   * written again (ClusterIdentityAllocator.resync), each retried in place.
   */
  private leaseLost(err: unknown): void {
    if (this.stopped) return;
    this.log(`node lease lost (${(err as Error).message}): registering again`);
    void retryInPlace(
      {
        name: "register the node again",
        run: async () => {
          const lease = await this.options.store.grantLease(this.options.leaseTtlSeconds ?? DEFAULT_NODE_LEASE_TTL_SECONDS);
          this.lease = lease;
          lease.onLost((e) => this.leaseLost(e));
          (this.clusterAllocator as unknown as { options: { lease: Lease } }).options.lease = lease;
          await this.register();
          await this.clusterAllocator!.resync();
        },
      },
      { backoff: this.backoff, signal: this.abort.signal, onRetry: ({ waitMs, error }) => this.log(`register again: ${(error as Error).message}; retrying in ${(waitMs / 1000).toFixed(2)} s`) },
    ).catch(() => {});
  }

  /** Re-list every prefix and converge (the kvstore came back). */
  resync(): void {
    for (const r of this.reflectors) r.resync();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    await this.health?.stop();
    await Promise.all(this.reflectors.map((r) => r.stop()));
    await this.work.catch(() => {});
    this.lease?.release();
  }

  /**
   * Runs `fn` between rounds (no change half-applied while it runs): for a
   * sink's reconciliation with what the core holds.
   */
  exclusive<T>(fn: () => T | Promise<T>): Promise<T> {
    const run = this.work.then(fn);
    this.work = run.then(() => {}, () => {});
    return run;
  }

  /** Waits until every change seen so far is applied. */
  async settled(): Promise<void> {
    for (;;) {
      const w = this.work;
      await w;
      if (w === this.work && !this.scheduled) return;
    }
  }

  private lastEventAge(): number {
    const idle = Math.min(...this.reflectors.map((r) => r.idleMs()));
    return idle;
  }

  // ------------------------------------------------------------ events -> rounds

  private noteEvent(): void {
    this.counters.events++;
    this.lastEventAt = Date.now();
  }

  private mark(kind: Kind, key: string): void {
    this.noteEvent();
    if (this.dirtySince === 0) this.dirtySince = performance.now();
    this.dirty[kind].add(key);
    if (this.scheduled) return;
    this.scheduled = true;
    this.work = this.work.then(() => new Promise((r) => setImmediate(r))).then(async () => {
      this.scheduled = false;
      await this.round().catch((err) => this.log(`applying cluster changes: ${(err as Error).message}`));
    });
  }

  private take(kind: Kind): string[] {
    const out = [...this.dirty[kind]];
    this.dirty[kind].clear();
    return out;
  }

  private async round(): Promise<void> {
    this.counters.rounds++;
    if (this.dirtySince !== 0) {
      this.options.metrics?.kvstoreEventsQueue.observe({ action: "update", scope: "agent" }, (performance.now() - this.dirtySince) / 1000);
      this.dirtySince = 0;
    }
    await this.applyIdentities(this.take("identities"));
    await this.applyPolicies(this.take("policies"));
    await this.applyPods(this.take("pods"));
    const ipKeys = this.take("ipcache");
    await this.applyIpcache(ipKeys);
    await this.applyServices(this.take("services"));
    const nodeKeys = this.take("nodes");
    if (nodeKeys.length || ipKeys.length) await this.applyRoutes(nodeKeys, ipKeys);
  }

  private async applyChange(change: EngineChange, what: string): Promise<void> {
    if (isEmptyChange(change)) return;
    this.counters.regenerations += change.policy.recomputed.length;
    try {
      await this.options.sink.applyPolicy(change);
      this.counters.datapathChanges++;
      if (change.policy.recomputed.length) this.options.metrics?.endpointRegenerations.inc({ outcome: "success" }, change.policy.recomputed.length);
    } catch (err) {
      this.counters.regenerationFailures++;
      this.options.metrics?.endpointRegenerations.inc({ outcome: "fail" }, Math.max(1, change.policy.recomputed.length));
      this.log(`${what}: ${(err as Error).message}`);
    }
  }

  private async applyIdentities(dirty: string[]): Promise<void> {
    if (!dirty.length) return;
    const created: Identity[] = [];
    const released: Identity[] = [];
    for (const key of dirty) {
      const identity = this.identityMasters.get(key);
      let id: number;
      try {
        id = identityIdOfKey(key);
      } catch {
        continue;
      }
      const r = identity ? this.identities.remoteUpsert(identity) : this.identities.remoteDelete(id);
      created.push(...r.created);
      released.push(...r.released);
    }
    if (created.length || released.length) await this.applyChange(this.engine.externalIdentitiesChanged(created, released), "identities");
  }

  private async applyPolicies(dirty: string[]): Promise<void> {
    for (const key of dirty) {
      const item = this.policies.get(key);
      const had = this.policyNames.get(key);
      let change: EngineChange;
      try {
        if (item) {
          if (had !== undefined && had !== item.name) this.engine.deletePolicies([had]);
          change = this.engine.importPolicies([item.document]);
          this.policyNames.set(key, item.name);
        } else if (had !== undefined) {
          change = this.engine.deletePolicies([had]);
          this.policyNames.delete(key);
        } else continue;
        this.kvAllocator?.releaseUnused();
      } catch (err) {
        this.counters.regenerationFailures++;
        this.log(`policy ${key}: ${(err as Error).message} (not applied)`);
        continue;
      }
      await this.applyChange(change, `policy ${key}`);
    }
  }

  /** The id a previous agent gave this address, when no endpoint here has it now. */
  private previousEndpointId(ipv4: string | undefined, ipv6: string | undefined): number | undefined {
    for (const a of [ipv4, ipv6]) {
      const id = a === undefined ? undefined : this.previousIds.get(a);
      if (id !== undefined && !this.usedIds.has(id)) return id;
    }
    return undefined;
  }

  private freeEndpointId(): number {
    // Ids a previous agent used are kept for their pods while any other is free.
    for (let id = 1; id <= MAX_ENDPOINT_ID; id++) if (!this.usedIds.has(id) && !this.reservedIds.has(id)) return id;
    for (let id = 1; id <= MAX_ENDPOINT_ID; id++) if (!this.usedIds.has(id)) return id;
    throw wrap("local endpoints", new Error(`all ${MAX_ENDPOINT_ID} endpoint ids are in use`));
  }

  private async applyPods(dirty: string[]): Promise<void> {
    for (const key of dirty) {
      const pod = this.pods.get(key);
      const cur = this.local.get(key);
      const ipv4 = pod?.ips.find((i) => !i.includes(":"));
      const ipv6 = pod?.ips.find((i) => i.includes(":"));
      if (!pod || (ipv4 === undefined && ipv6 === undefined)) {
        if (cur) {
          this.forgetLocal(key, cur);
          await this.applyChange(this.engine.removeEndpoint(cur.id), `pod ${key} removed`);
        }
        continue;
      }
      const labels = podIdentityLabels(pod);
      if (cur && cur.labels.id === labels.id && cur.ipv4 === ipv4 && cur.ipv6 === ipv6) continue;
      try {
        await retryInPlace(
          { name: `identity of pod ${pod.namespace}/${pod.name}`, run: () => this.kvAllocator!.prepare([labels]) },
          {
            backoff: this.backoff,
            signal: this.abort.signal,
            onRetry: ({ step, attempt, waitMs, error }) => this.log(`${step}: ${(error as Error).message}; retrying in ${(waitMs / 1000).toFixed(2)} s (attempt ${attempt})`),
          },
        );
      } catch (err) {
        if (this.stopped) return;
        this.log(`pod ${key}: ${(err as Error).message}`);
        continue;
      }
      const id = cur?.id ?? this.previousEndpointId(ipv4, ipv6) ?? this.freeEndpointId();
      let change: EngineChange;
      try {
        const device = this.options.endpointDevice?.(`${pod.namespace}/${pod.name}`) ?? { ifindex: 0, mac: "00:00:00:00:00:00" };
        change = this.engine.upsertEndpoint({ id, labels, ipv4, ipv6, ifindex: device.ifindex, mac: device.mac });
      } catch (err) {
        this.kvAllocator!.releaseUnused();
        this.counters.regenerationFailures++;
        this.log(`pod ${key}: ${(err as Error).message} (not applied)`);
        continue;
      }
      if (cur) this.forgetLocal(key, cur);
      const ep: LocalEndpoint = { id, labels, ipv4, ipv6 };
      this.local.set(key, ep);
      this.usedIds.add(id);
      if (ipv4) this.localPrefixes.add(`${ipv4}/32`);
      if (ipv6) this.localPrefixes.add(`${ipv6}/128`);
      await this.applyChange(change, `pod ${key}`);
    }
  }

  private forgetLocal(key: string, ep: LocalEndpoint): void {
    this.local.delete(key);
    this.usedIds.delete(ep.id);
    if (ep.ipv4) this.localPrefixes.delete(`${ep.ipv4}/32`);
    if (ep.ipv6) this.localPrefixes.delete(`${ep.ipv6}/128`);
  }

  /** Remote pods' entries: what no local endpoint's regeneration writes. */
  private async applyIpcache(dirty: string[]): Promise<void> {
    const upsert: { cidr: string; identity: number }[] = [];
    const remove: string[] = [];
    for (const key of dirty) {
      const rec = this.ipcache.get(key);
      const cur = this.remoteIpcache.get(key);
      const want = rec && !this.localPrefixes.has(rec.prefix) ? { cidr: rec.prefix, identity: rec.identity } : undefined;
      if (want && cur && want.cidr === cur.cidr && want.identity === cur.identity) continue;
      if (cur && (!want || want.cidr !== cur.cidr)) {
        this.remoteIpcache.delete(key);
        if (!this.localPrefixes.has(cur.cidr)) remove.push(cur.cidr);
      }
      if (want) {
        this.remoteIpcache.set(key, want);
        upsert.push(want);
      }
    }
    if (upsert.length || remove.length) await this.applyChange(ipcacheOnlyChange(upsert, remove), "ipcache");
  }

  private async applyServices(dirty: string[]): Promise<void> {
    const upsert: ServiceSpec[] = [];
    const remove: ServiceFrontend[] = [];
    for (const key of dirty) {
      const d = this.serviceTable.update(key, this.services.get(key));
      upsert.push(...d.upsert);
      remove.push(...d.delete);
    }
    if (!upsert.length && !remove.length) return;
    try {
      await this.options.sink.applyServices(upsert, remove);
      this.counters.datapathChanges++;
    } catch (err) {
      this.log(`services: ${(err as Error).message}`);
    }
  }

  /** Routes after node records or ipcache entries changed: the changed nodes' routes, and the entries on their addresses or changed. */
  private async applyRoutes(nodeKeys: string[], ipKeys: string[]): Promise<void> {
    const nodesChanged = nodeKeys.length > 0;
    if (nodesChanged) this.routes.updateNodes(nodeKeys.map((key) => [key, this.nodes.get(key)]), this.ipcache.records.entries());
    for (const key of ipKeys) this.routes.updateIpcache(key, this.ipcache.get(key));
    // The ESP path learns a node before any route sends its pods' packets into the TUN (a packet with no peer would loop).
    if (!(await this.applyPeers(nodesChanged))) return;
    const d = this.routes.pending();
    if (!d.add.length && !d.remove.length) return;
    try {
      await this.options.sink.applyRoutes(d.add, d.remove);
      this.routes.commit();
      this.counters.datapathChanges++;
    } catch (err) {
      this.log(`routes: ${(err as Error).message}`);
    }
  }

  /**
   * Encrypting: the peers the node records give, to the sink, when they
   * changed. False when the sink refused them: the routes wait too (their
   * pending set stays, so the next round sends both again).
   */
  private async applyPeers(nodesChanged: boolean): Promise<boolean> {
    if (this.options.encryptInto === undefined || !this.options.sink.applyPeers) return true;
    if (!nodesChanged && this.appliedPeers !== "") return true;
    const peers = peersFromNodes(this.options.node, this.nodes.records.values());
    const text = JSON.stringify(peers);
    if (text === this.appliedPeers) return true;
    try {
      await this.options.sink.applyPeers(peers);
      this.appliedPeers = text;
      this.counters.datapathChanges++;
      return true;
    } catch (err) {
      this.appliedPeers = "";
      this.log(`encryption peers: ${(err as Error).message}; the routes into ${this.options.encryptInto} wait for them`);
      return false;
    }
  }

  // ------------------------------------------------------------ reading (API, tests, simulator)

  serviceSpecs(): ServiceSpec[] {
    return this.serviceTable.list();
  }

  routeTable(): Route[] {
    return this.routes.list();
  }

  /** The datapath's ipcache: local endpoints and CIDR identities (engine) plus remote pods. */
  ipcacheTable(): { cidr: string; identity: number; source: "local" | "remote" }[] {
    const out = new Map<string, { cidr: string; identity: number; source: "local" | "remote" }>();
    for (const e of this.remoteIpcache.values()) out.set(e.cidr, { ...e, source: "remote" });
    for (const e of this.engine.ipcache()) out.set(e.cidr, { ...e, source: "local" });
    return [...out.values()].sort((a, b) => (a.cidr < b.cidr ? -1 : a.cidr > b.cidr ? 1 : 0));
  }

  localEndpoints(): { pod: string; id: number; identity: number; ipv4?: string; ipv6?: string; labels: string[]; enforceIngress: boolean; enforceEgress: boolean }[] {
    const out = [];
    for (const [key, ep] of this.local) {
      const rec = this.engine.endpoint(ep.id)?.record;
      out.push({
        pod: parseStateKey(key).path.slice(2).join("/"), // <cluster>/<node>/<namespace>/<name>
        id: ep.id, identity: rec?.identity ?? 0, ipv4: ep.ipv4, ipv6: ep.ipv6, labels: ep.labels.toStrings(),
        enforceIngress: rec?.enforceIngress ?? false, enforceEgress: rec?.enforceEgress ?? false,
      });
    }
    return out.sort((a, b) => a.id - b.id);
  }

  status() {
    const health = this.health?.status() ?? { state: "unknown" as const, failures: 0 };
    const age = this.lastEventAge();
    return {
      node: this.options.node,
      cluster: this.cluster,
      kvstore: {
        backend: this.options.store.backend,
        location: this.options.store.location,
        ...health,
        lastEventAgeMs: Number.isFinite(age) ? Math.round(age) : null,
        revision: Math.max(...this.reflectors.map((r) => r.syncedRevision)),
      },
      backoff: {
        reconnectAttempts: this.health?.attempts.map((a) => ({ attempt: a.attempt, waitMs: Math.round(a.waitMs) })) ?? [],
        watchFailures: Object.fromEntries(this.reflectors.map((r) => [r.prefix, r.failureCount])),
      },
      bootstrapSeconds: this.bootstrapSeconds ?? null,
      counts: {
        nodes: this.nodes.records.size,
        endpoints: this.local.size,
        ipcache: this.ipcache.records.size,
        identities: this.identities.list().length,
        services: this.serviceTable.size,
        policies: this.policies.records.size,
        routes: this.routes.size,
      },
      regenerations: this.counters.regenerations,
      regenerationFailures: this.counters.regenerationFailures,
      events: this.counters.events,
    };
  }

  /** Reconnect attempts of the current/last outage (each wait logged as it starts). */
  get reconnectAttempts() {
    return this.health?.attempts ?? [];
  }
}

/**
 * The engine needs its allocator at construction; the kvstore allocator
 * exists only once the node's lease is granted. Until then nothing is
 * allocated (no pod is processed before bootstrap).
 */
class LazyAllocator implements IdentityAllocator {
  constructor(private readonly source: () => KvstoreIdentityAllocator | undefined) {}
  private get a(): KvstoreIdentityAllocator {
    const a = this.source();
    if (!a) throw new Error("identity allocator used before the node lease was granted");
    return a;
  }
  allocate(labels: LabelSet, preferred?: number): Allocation { return this.a.allocate(labels, preferred); }
  allocateCidr(prefix: Prefix, preferred?: number): Allocation { return this.a.allocateCidr(prefix, preferred); }
  release(id: number): Identity | undefined { return this.source()?.release(id); }
  get(id: number): Identity | undefined { return this.source()?.get(id); }
  list(): Identity[] { return this.source()?.list() ?? []; }
  byLabels(labels: LabelSet): Identity | undefined { return this.source()?.byLabels(labels); }
  references(id: number): number { return this.source()?.references(id) ?? 0; }
}
