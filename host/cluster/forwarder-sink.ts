/**
 * The TUN forwarder as a DatapathSink: services and policy changes become
 * commands on the running forwarder's channel (host/forwarder/commands.ts),
 * applied between batches (no restart; established flows keep their
 * conntrack entries). Routes go to a RouteSink (the kernel's routing table
 * of the node's namespace), which the forwarder does not own.
 */
import { MembraneError } from "../errors.js";
import type { ForwarderController } from "../forwarder/commands.js";
import type { ServiceFrontend, ServiceSpec } from "../lb/manager.js";
import type { EngineChange } from "../policy/engine.js";
import type { DatapathSink } from "./datapath-sink.js";
import type { Route } from "./routes.js";
import { ip } from "../sys/netns/iproute2.js";
import { writeFileAtomic } from "../sys/atomic-file.js";
import type { PeerSpec } from "../encrypt/peers-file.js";

export interface RouteSink {
  replace(routes: Route[]): Promise<void>;
  remove(routes: Route[]): Promise<void>;
}

export interface ForwarderSinkOptions {
  /**
   * Where the peers the forwarder took are kept (esp-path.ts `peersSeedFile`):
   * a restarted forwarder starts with them, before the agent's first round.
   */
  peersSeedFile?: string;
}

export class ForwarderSink implements DatapathSink {
  constructor(private readonly forwarder: ForwarderController, private readonly routes?: RouteSink, private readonly opts: ForwarderSinkOptions = {}) {}

  async applyServices(upsert: ServiceSpec[], remove: ServiceFrontend[]): Promise<void> {
    const r = await this.forwarder.apply({ kind: "services", upsert, delete: remove });
    if (!r.ok) throw new MembraneError(r.code, `forwarder refused the services change: ${r.message}`);
  }

  async applyPolicy(change: EngineChange): Promise<void> {
    const r = await this.forwarder.apply({ kind: "policy", change });
    if (!r.ok) throw new MembraneError(r.code, `forwarder refused the policy change: ${r.message}`);
  }

  async applyPeers(peers: PeerSpec[]): Promise<void> {
    const r = await this.forwarder.apply({ kind: "peers", peers });
    if (!r.ok) throw new MembraneError(r.code, `forwarder refused the ESP peers: ${r.message}`);
    if (this.opts.peersSeedFile) writeFileAtomic(this.opts.peersSeedFile, JSON.stringify({ peers }));
  }

  async applyRoutes(replace: Route[], remove: Route[]): Promise<void> {
    if (!this.routes) return;
    if (remove.length) await this.routes.remove(remove);
    if (replace.length) await this.routes.replace(replace);
  }
}

/**
 * Routes in the kernel of the current network namespace through iproute2
 * (`ip route replace|del`), toward `device` when given (the link to the
 * other nodes); a route with its own device (into the encrypting TUN) goes
 * there without a next hop. Replace is idempotent, so a resync re-sends
 * routes safely.
 */
export class IpRouteSink implements RouteSink {
  constructor(private readonly device?: string) {}

  async replace(routes: Route[]): Promise<void> {
    for (const r of routes) {
      if (r.device) ip("route", "replace", r.prefix, "dev", r.device);
      else ip("route", "replace", r.prefix, "via", r.via, ...(this.device ? ["dev", this.device] : []));
    }
  }

  async remove(routes: Route[]): Promise<void> {
    for (const r of routes) {
      try {
        if (r.device) ip("route", "del", r.prefix, "dev", r.device);
        else ip("route", "del", r.prefix, "via", r.via);
      } catch {
        // already gone (removed by hand, or its link went down): nothing to undo
      }
    }
  }
}
