/**
 * A full agent: the real ClusterAgentCore (host/cluster/agent-core.ts) with
 * its real reflectors, identities, ipcache, services and policy engine,
 * applying to a sink that programs nothing (NULL_SINK) but tells the
 * convergence tracker when an ipcache entry reached the datapath boundary.
 */
import { ClusterAgentCore } from "../cluster/agent-core.js";
import { NULL_SINK, type DatapathSink } from "../cluster/datapath-sink.js";
import type { BackoffOptions } from "../kvstore/backoff.js";
import { keys } from "../kvstore/keys.js";
import type { KvStore } from "../kvstore/store.js";
import type { PageGate } from "../kvstore/paged-list.js";
import type { RegenerationMode } from "../policy/engine.js";
import { IDENTITY_SEEN, type ConvergenceTracker } from "./convergence.js";
import { nodeIp, nodeName, podCidr } from "./model.js";

export interface FullAgentOptions {
  index: number;
  node: number;
  store: KvStore;
  tracker: () => ConvergenceTracker | undefined;
  backoff: BackoffOptions;
  mode: RegenerationMode;
  leaseTtlSeconds: number;
  listPageSize?: number;
  listGate?: PageGate;
  log?: (line: string) => void;
}

export class FullAgent {
  readonly core: ClusterAgentCore;
  private poll?: NodeJS.Timeout;

  constructor(readonly options: FullAgentOptions) {
    const { index, tracker } = options;
    const sink: DatapathSink = {
      ...NULL_SINK,
      applyPolicy: async (change) => {
        const t = tracker();
        if (t) for (const u of change.ipcache.upsert) t.note(index, keys.ipcache(u.cidr));
        await NULL_SINK.applyPolicy(change);
      },
    };
    this.core = new ClusterAgentCore({
      store: options.store,
      node: nodeName(options.node),
      addresses: [{ type: "InternalIP", ip: nodeIp(options.node) }],
      ipv4AllocCidr: podCidr(options.node),
      sink,
      backoff: options.backoff,
      mode: options.mode,
      healthIdleMs: 60_000,
      leaseTtlSeconds: options.leaseTtlSeconds,
      listPageSize: options.listPageSize,
      listGate: options.listGate,
      log: options.log,
    });
  }

  get kind(): string {
    return this.options.mode === "full" ? "full agent, full regeneration" : "full agent";
  }

  // ---- AgentRevisionView (lag-diagnosis.ts)

  get index(): number {
    return this.options.index;
  }

  get name(): string {
    return this.core.node;
  }

  private reflectorOf(prefix: string) {
    return [this.core.nodes, this.core.identityMasters, this.core.ipcache, this.core.services, this.core.policies, this.core.pods].find((r) => r.prefix === prefix);
  }

  revisionOf(prefix: string): number {
    return this.reflectorOf(prefix)?.syncedRevision ?? 0;
  }

  /** The reflector does not say when it last listed. */
  listedAt(): number | undefined {
    return undefined;
  }

  /** In the agent's reflector (ipcache or identity masters) but not yet seen at the sink or in its identity view. */
  received(key: string): boolean {
    return this.core.ipcache.records.has(key) || this.core.identityMasters.records.has(key);
  }

  async start(): Promise<void> {
    await this.core.start();
    await this.core.settled();
    // A new identity becomes known through the identity reflector; it reaches the sink only
    // when it changes policy, so its arrival is read from the agent's identity view.
    this.poll = setInterval(() => this.checkIdentities(), 5);
  }

  private checkIdentities(): void {
    const t = this.options.tracker();
    if (!t) return;
    for (const p of t.pending()) {
      if (p.identityKey && !(p.seen[this.options.index]! & IDENTITY_SEEN) && this.core.identities.get(p.identity)) {
        t.mark(p, this.options.index, IDENTITY_SEEN);
      }
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.poll);
    await this.core.stop();
  }
}
