/**
 * A counting agent: everything an agent does on the kvstore (bootstrap
 * through the apiserver stand-in, its node lease and record, list then watch
 * of every prefix a full agent follows), with its own rate limiter, backoff,
 * lease and watch state, and every event decoded with the real decoders
 * (records codec, manifest decoder) and counted. It keeps no caches: that is
 * what lets thousands of them share one process. Its figures are reported as
 * "counting agents", never mixed with the full agents'.
 */
import { setMaxListeners } from "node:events";
import { DEFAULT_CLUSTER, keys } from "../kvstore/keys.js";
import { backoffDuration, clusterSizeDependantInterval, type BackoffOptions } from "../kvstore/backoff.js";
import { PeriodicTimer } from "../kvstore/periodic.js";
import { decodeRecord } from "../kvstore/records/codec.js";
import { CompactedError, type KeyValue, type KvStore, type Lease, type Watch } from "../kvstore/store.js";
import { apiserverGet } from "./apiserver-standin.js";
import { bootstrapSteps, type BootstrapPolicy } from "./bootstrap.js";
import { retryInPlace } from "../kvstore/retry-in-place.js";
import { listPages, type PageGate } from "../kvstore/paged-list.js";
import { nodeName, nodePut } from "./model.js";

/** The cluster-wide prefixes every agent follows (host/cluster/agent-core.ts), in the same order. */
export const CLUSTER_PREFIXES = [keys.nodes(DEFAULT_CLUSTER), keys.identityMasters(), keys.ipcacheAll(), keys.services(), keys.policies()];

/** Everything one agent follows: the cluster-wide prefixes and its own node's pods. */
export function agentPrefixes(node: string): string[] {
  return [...CLUSTER_PREFIXES, keys.nodePods(DEFAULT_CLUSTER, node)];
}

export interface CountingCounters {
  events: number;
  listed: number;
  decodeErrors: number;
  bootstraps: number;
  bootstrapFailures: number;
  resyncs: number;
  leasesLost: number;
  /** List pages that failed (a deadline, the store away) and were asked for again in place. */
  pageRetries: number;
  /** Lists begun again from the first page after CompactedError. */
  relists: number;
  /** Lists begun again after the first one of a start, for any reason (the watch after it ended or failed, a compaction): the agent lists and watches anew, as the reflector does. */
  watchRelists: number;
}

export interface CountingAgentOptions {
  /** Index in the convergence tracker. */
  index: number;
  /** Node number in the model. */
  node: number;
  /** The agent's own client: DisciplinedKvStore (its rate limiter) over a metered view of a shared connection. */
  store: KvStore;
  apiserver: string;
  leaseTtlSeconds: number;
  backoff: BackoffOptions;
  /** Told about each key that arrived (convergence). */
  onKey: (index: number, key: string) => void;
  /** Keys per list page. */
  pageSize?: number;
  /** The simulation's queue of list pages (list-gate.ts). */
  gate?: PageGate;
}

export class CountingAgent {
  readonly counters: CountingCounters = { events: 0, listed: 0, decodeErrors: 0, bootstraps: 0, bootstrapFailures: 0, resyncs: 0, leasesLost: 0, pageRetries: 0, relists: 0, watchRelists: 0 };
  /** Node records this agent knows of (its idea of the cluster size, for interval scaling). */
  knownNodes = 0;
  /** Keys currently present per prefix (counts only, from list + events). */
  readonly present: Map<string, number>;
  /**
   * Per prefix, the store revision its view reflects (the list's, then each
   * watch event's) and that of its latest list: what tells a lost event
   * (view past a write it never got) from a backlog (lag-diagnosis.ts).
   */
  private readonly revisions = new Map<string, number>();
  private readonly listRevisions = new Map<string, number>();
  private lease?: Lease;
  private abort = new AbortController();
  private watches: Watch[] = [];
  private loops: Promise<void>[] = [];
  private resync?: PeriodicTimer;
  upAt = 0;
  /** The bootstrap step running now ("up" once bootstrapped), for progress lines. */
  step = "stopped";

  private readonly prefixes: string[];

  constructor(readonly options: CountingAgentOptions) {
    this.prefixes = agentPrefixes(nodeName(options.node));
    this.present = new Map(this.prefixes.map((p) => [p, 0]));
  }

  get name(): string {
    return nodeName(this.options.node);
  }

  async start(policy: BootstrapPolicy): Promise<void> {
    this.abort = new AbortController();
    // six prefixes' pages wait in the list gate on this one signal at once (plus backoff sleeps): more than Node's default 10 listeners, none leaked
    setMaxListeners(64, this.abort.signal);
    const { store, apiserver } = this.options;
    const name = this.name;
    this.counters.bootstraps++;
    const ready: Promise<void>[] = [];
    const named = (name: string, run: () => Promise<unknown>) => ({ name, run: () => ((this.step = name), run()) });
    this.counters.bootstrapFailures += await bootstrapSteps(
      [
        named("read the node from the apiserver", () => apiserverGet(apiserver, `/api/v1/nodes/${name}`)),
        named("grant the node lease", () => this.grantLease()),
        named("register the node", () => store.put(nodePut(this.options.node).key, nodePut(this.options.node).value, { lease: this.lease!.id })),
        named("list the node's pods from the apiserver", () => apiserverGet(apiserver, `/api/v1/pods?fieldSelector=spec.nodeName%3D${name}`)),
        named("list and watch cluster state", async () => {
          ready.length = 0;
          await this.stopWatches();
          for (const prefix of this.prefixes) ready.push(this.follow(prefix));
          await Promise.all(ready);
        }),
      ],
      policy,
      this.abort.signal,
    );
    this.upAt = performance.now();
    this.step = "up";
  }

  private async grantLease(): Promise<void> {
    this.lease?.release();
    const lease = await this.options.store.grantLease(this.options.leaseTtlSeconds);
    this.lease = lease;
    lease.onLost(() => void this.leaseLost(lease));
  }

  /**
   * The lease expired under us (keep-alives late on a loaded machine): a new
   * lease and the node key again, retried in place, as the agent core does.
   */
  private async leaseLost(lost: Lease): Promise<void> {
    if (this.abort.signal.aborted || this.lease !== lost) return;
    this.counters.leasesLost++;
    await retryInPlace(
      { name: "register the node again", run: async () => {
        await this.grantLease();
        await this.options.store.put(nodePut(this.options.node).key, nodePut(this.options.node).value, { lease: this.lease!.id });
      } },
      { backoff: this.options.backoff, signal: this.abort.signal },
    ).catch(() => {});
  }

  /** Lists `prefix` (decoding every record), then watches it from there; resolves once the list is done. */
  private follow(prefix: string): Promise<void> {
    let listed!: () => void;
    let failed!: (err: unknown) => void;
    const first = new Promise<void>((res, rej) => ((listed = res), (failed = rej)));
    const loop = (async () => {
      let failures = 0;
      let firstDone = false;
      while (!this.abort.signal.aborted) {
        if (firstDone) this.counters.watchRelists++;
        try {
          // page by page, decoded as they arrive: nothing of the list is kept, and a failed page is asked for again in place
          let n = 0;
          let revision = 0;
          for await (const page of listPages(this.options.store, prefix, {
            pageSize: this.options.pageSize,
            gate: this.options.gate,
            signal: this.abort.signal,
            retryWaitMs: (attempt) => backoffDuration(attempt, { ...this.options.backoff, nodes: () => this.knownNodes }),
            onRetry: () => void this.counters.pageRetries++,
          })) {
            revision = page.revision;
            for (const kv of page.kvs) {
              this.decode(kv);
              this.options.onKey(this.options.index, kv.key);
              n++;
            }
          }
          const list = { revision };
          this.revisions.set(prefix, revision);
          this.listRevisions.set(prefix, revision);
          this.counters.listed += n;
          this.present.set(prefix, n);
          if (prefix === CLUSTER_PREFIXES[0]) this.knownNodes = n;
          if (!firstDone) ((firstDone = true), listed());
          const watch = this.options.store.watch(prefix, { fromRevision: list.revision + 1 });
          this.watches.push(watch);
          for await (const ev of watch) {
            this.counters.events++;
            // a put creates the key when it is the key's first revision (no prevKv needed: asking etcd for it costs a read per event per watcher)
            const delta = ev.type === "delete" ? -1 : ev.kv.createRevision === ev.kv.modRevision ? 1 : 0;
            this.present.set(prefix, this.present.get(prefix)! + delta);
            if (prefix === CLUSTER_PREFIXES[0]) this.knownNodes += delta;
            if (ev.type === "put") {
              this.decode(ev.kv);
              this.options.onKey(this.options.index, ev.kv.key);
            }
            this.revisions.set(prefix, ev.revision);
          }
          failures = 0;
        } catch (err) {
          if (this.abort.signal.aborted) break;
          if (!firstDone && !(err instanceof CompactedError)) {
            failed(err);
            return;
          }
          if (err instanceof CompactedError) this.counters.relists++;
          failures++;
          await new Promise((r) => setTimeout(r, backoffDuration(failures, { ...this.options.backoff, nodes: () => this.knownNodes })));
        }
      }
      if (!firstDone) listed();
    })();
    this.loops.push(loop);
    return first;
  }

  // ---- AgentRevisionView (lag-diagnosis.ts)

  get index(): number {
    return this.options.index;
  }

  readonly kind = "counting agent";

  revisionOf(prefix: string): number {
    return this.revisions.get(prefix) ?? 0;
  }

  listedAt(prefix: string): number | undefined {
    return this.listRevisions.get(prefix) ?? 0;
  }

  /** It keeps no mirror: a key is either counted when it arrives or not at all. */
  received(): boolean {
    return false;
  }

  private decode(kv: KeyValue): void {
    try {
      decodeRecord(kv.key, kv.value);
    } catch {
      this.counters.decodeErrors++;
    }
  }

  /**
   * The periodic re-sync of the agent's own node key (a put), every
   * `baseMs` (fixed) or `baseMs * ln(1 + known nodes)` (1.5's interval
   * scaling), jittered as every periodic job.
   */
  startResync(baseMs: number, scaled: boolean): void {
    const agent = this;
    this.resync = new PeriodicTimer(
      async () => {
        agent.counters.resyncs++;
        await agent.options.store.put(nodePut(agent.options.node).key, nodePut(agent.options.node).value, { lease: agent.lease?.id });
      },
      {
        get periodMs() {
          return scaled ? clusterSizeDependantInterval(baseMs, agent.knownNodes) : baseMs;
        },
        onError: () => {},
      },
    ).start();
  }

  async stopResync(): Promise<void> {
    await this.resync?.stop();
    this.resync = undefined;
  }

  private async stopWatches(): Promise<void> {
    const watches = this.watches;
    this.watches = [];
    await Promise.all(watches.map((w) => w.close()));
  }

  /** Stops like a killed agent: watches closed, keep-alive stopped, the lease left to expire. */
  async stop(): Promise<void> {
    this.abort.abort();
    this.step = "stopped";
    await this.stopResync();
    await this.stopWatches();
    await Promise.all(this.loops.splice(0));
    this.lease?.release();
  }
}

