/**
 * Where the agent core's results go. The core computes (services, policy,
 * ipcache, routes) without knowing the datapath; a sink applies. The TUN
 * forwarder's command channel is one sink (forwarder-sink.ts), a test's
 * recorder another, the simulator's "no datapath" a third.
 *
 * A sink may refuse a change (it says why); the core then logs it, counts a
 * failed regeneration and keeps going: one bad record must not stop a node.
 */
import type { ServiceFrontend, ServiceSpec } from "../lb/manager.js";
import type { EngineChange } from "../policy/engine.js";
import type { Route } from "./routes.js";
import type { PeerSpec } from "../encrypt/peers-file.js";

export interface DatapathSink {
  /** Services created or changed, and removed, as one change (deletes first). */
  applyServices(upsert: ServiceSpec[], remove: ServiceFrontend[]): Promise<void>;
  /** Endpoints, policy entries and ipcache entries, as the policy engine computed them. */
  applyPolicy(change: EngineChange): Promise<void>;
  /** Routes toward other nodes: replace (new or another next hop) and remove. */
  applyRoutes(replace: Route[], remove: Route[]): Promise<void>;
  /**
   * The ESP path's peers, whole, when the node encrypts (ClusterAgentOptions.encryptInto):
   * called before the routes into the TUN that need them. A sink without an ESP path has none.
   */
  applyPeers?(peers: PeerSpec[]): Promise<void>;
}

/** An EngineChange that only changes ipcache entries (remote pods, which no local endpoint's regeneration produces). */
export function ipcacheOnlyChange(upsert: { cidr: string; identity: number }[], remove: string[]): EngineChange {
  return {
    policy: { recomputed: [], changes: new Map() },
    endpoints: { upsert: [], remove: [] },
    ipcache: { upsert, remove },
    entriesComputed: 0,
  };
}

export function isEmptyChange(c: EngineChange): boolean {
  return c.policy.changes.size === 0 && c.endpoints.upsert.length === 0 && c.endpoints.remove.length === 0 && c.ipcache.upsert.length === 0 && c.ipcache.remove.length === 0;
}

/** Applies nothing: the simulator's agents and the memory bench compute without a datapath. */
export const NULL_SINK: DatapathSink = {
  applyServices: async () => {},
  applyPolicy: async () => {},
  applyRoutes: async () => {},
};
