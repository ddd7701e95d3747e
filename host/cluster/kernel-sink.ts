/**
 * The kernel datapath as the cluster agent core's sink, next to the TUN
 * forwarder's (forwarder-sink.ts): services go into the pinned LB maps
 * through the kernel datapath's ServiceManager, policy changes through its
 * apply() (maps first, then each endpoint with a device re-instantiated from
 * its template when its values changed), routes to a RouteSink as for the
 * forwarder. `membrane agent --datapath bpf --kvstore --node` selects it
 * (host/agent/cluster-kernel-agent.ts); its hooks let that agent place the
 * core's newly numbered endpoints on their veths before their programs are
 * instantiated, and say what was instantiated after.
 */
import type { KernelAgentDatapath } from "../kernel/agent-datapath.js";
import type { UpsertResult } from "../kernel/templates/endpoint-programs.js";
import type { ServiceFrontend, ServiceSpec } from "../lb/manager.js";
import type { EngineChange } from "../policy/engine.js";
import type { DatapathSink } from "./datapath-sink.js";
import type { RouteSink } from "./forwarder-sink.js";
import type { Route } from "./routes.js";

export interface KernelSinkHooks {
  /** Before a policy change reaches the kernel (e.g. to place new endpoints on their devices). */
  beforePolicy?: () => void;
  /** After it: the endpoints whose programs were instantiated. */
  afterPolicy?: (change: EngineChange, programs: Map<number, UpsertResult>) => void;
}

export class KernelSink implements DatapathSink {
  constructor(private readonly kernel: KernelAgentDatapath, private readonly routes?: RouteSink, private readonly hooks: KernelSinkHooks = {}) {}

  async applyServices(upsert: ServiceSpec[], remove: ServiceFrontend[]): Promise<void> {
    // Deletes first, as the sink contract says: a frontend moved between specs is freed before it is taken.
    for (const f of remove) this.kernel.services.deleteService(f);
    for (const s of upsert) this.kernel.services.upsertService(s);
  }

  async applyPolicy(change: EngineChange): Promise<void> {
    this.hooks.beforePolicy?.();
    const programs = await this.kernel.apply(change);
    this.hooks.afterPolicy?.(change, programs);
  }

  async applyRoutes(replace: Route[], remove: Route[]): Promise<void> {
    if (!this.routes) return;
    if (remove.length) await this.routes.remove(remove);
    if (replace.length) await this.routes.replace(replace);
  }
}
