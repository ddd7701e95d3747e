/**
 * The kernel datapath as the cluster agent core's sink, next to the TUN
 * forwarder's (forwarder-sink.ts): services go into the pinned LB maps
 * through the kernel datapath's ServiceManager, policy changes through its
 * apply() (maps first, then each endpoint with a device re-instantiated from
 * its template when its values changed), routes to a RouteSink as for the
 * forwarder. `membrane agent --datapath bpf --kvstore --node` selects it
 * (host/agent/cluster-kernel-agent.ts); `beforePolicy` lets it place the
 * core's newly numbered endpoints on their veths before their programs are
 * instantiated.
 */
import type { KernelAgentDatapath } from "../kernel/agent-datapath.js";
import type { ServiceFrontend, ServiceSpec } from "../lb/manager.js";
import type { EngineChange } from "../policy/engine.js";
import type { DatapathSink } from "./datapath-sink.js";
import type { RouteSink } from "./forwarder-sink.js";
import type { Route } from "./routes.js";

export class KernelSink implements DatapathSink {
  constructor(private readonly kernel: KernelAgentDatapath, private readonly routes?: RouteSink, private readonly beforePolicy?: () => void) {}

  async applyServices(upsert: ServiceSpec[], remove: ServiceFrontend[]): Promise<void> {
    // Deletes first, as the sink contract says: a frontend moved between specs is freed before it is taken.
    for (const f of remove) this.kernel.services.deleteService(f);
    for (const s of upsert) this.kernel.services.upsertService(s);
  }

  async applyPolicy(change: EngineChange): Promise<void> {
    this.beforePolicy?.();
    await this.kernel.apply(change);
  }

  async applyRoutes(replace: Route[], remove: Route[]): Promise<void> {
    if (!this.routes) return;
    if (remove.length) await this.routes.remove(remove);
    if (replace.length) await this.routes.replace(replace);
  }
}
