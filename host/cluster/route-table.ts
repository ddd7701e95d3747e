/**
 * The agent's routes (routes.ts), kept up to date one change at a time, and
 * what of them the datapath has been given.
 *
 * Why not compute every route each round: that parses every ipcache entry's
 * prefix (100,000 at full size) and sorts and diffs the whole set, on every
 * round that touches one ipcache entry. With 20 full agents in one simulator
 * process this was over half of its CPU during pod churn, with the garbage
 * it made most of the rest, and it starved every other agent's watch
 * (docs/scale.md). Here an ipcache change re-decides its own entry only,
 * and a node record change its node's pod CIDR routes and the entries on
 * its addresses (rebuilding everything on a node change was most of the
 * simulator's CPU when 500 nodes joined a 5,500-node cluster at once).
 *
 * Two maps: `desired` (what the records say) and `applied` (what the sink
 * acknowledged). `pending()` compares them only for the prefixes touched
 * since the last `commit()`, so a sink that failed is given the same routes
 * again next time, as diffing the whole set would.
 */
import type { IpcacheRecord } from "../kvstore/records/ipcache.js";
import type { NodeRecord } from "../kvstore/records/node.js";
import { byPrefix, hostRoute, NodeRouteIndex, type Route, type RouteDiff, type RouteOptions } from "./routes.js";

export class RouteTable {
  private readonly nodes: NodeRouteIndex;
  private readonly desired = new Map<string, Route>();
  private readonly applied = new Map<string, Route>();
  /** Prefixes whose desired route may differ from the applied one. */
  private readonly touched = new Set<string>();
  /**
   * Host routes asked for by ipcache entries: prefix -> (ipcache key -> route).
   * One key per prefix in a store the operator wrote; should two keys name one
   * prefix, the earlier claim keeps the route until it is withdrawn.
   */
  private readonly claims = new Map<string, Map<string, Route>>();
  /** ipcache key -> the prefix it claims. */
  private readonly claimOf = new Map<string, string>();

  constructor(self: string, options: RouteOptions = {}) {
    this.nodes = new NodeRouteIndex(self, options);
  }

  /**
   * Node records changed (`changed`: store key -> the record now, undefined
   * when deleted). `ipcache` is every ipcache entry as it is now (keyed as
   * the ipcache reflector keys them); only those on an address of a changed
   * node are decided again, as nothing else about them changed.
   */
  updateNodes(changed: Iterable<[key: string, record: NodeRecord | undefined]>, ipcache: Iterable<[key: string, record: IpcacheRecord]>): void {
    const addresses = new Set<string>();
    for (const [key, record] of changed) {
      const moved = this.nodes.set(key, record);
      for (const ip of moved.addresses) addresses.add(ip);
      for (const cidr of moved.cidrs) this.settle(cidr);
    }
    if (addresses.size === 0) return;
    for (const [key, record] of ipcache) if (record.hostIp !== undefined && addresses.has(record.hostIp)) this.updateIpcache(key, record);
  }

  /** One ipcache entry changed (`record`) or went away (undefined). */
  updateIpcache(key: string, record: IpcacheRecord | undefined): void {
    this.withdraw(key);
    if (record !== undefined) this.claim(key, record);
  }

  /** Routes to give the sink: new or changed since the last commit, and gone. */
  pending(): RouteDiff {
    const add: Route[] = [];
    const remove: Route[] = [];
    for (const prefix of this.touched) {
      const want = this.desired.get(prefix);
      const have = this.applied.get(prefix);
      if (want !== undefined && (have?.via !== want.via || have?.device !== want.device)) add.push(want);
      else if (want === undefined && have !== undefined) remove.push(have);
    }
    return { add: add.sort(byPrefix), remove: remove.sort(byPrefix) };
  }

  /** The sink applied `pending()`'s answer (nothing changed in between: rounds are serial). */
  commit(): void {
    for (const prefix of this.touched) {
      const want = this.desired.get(prefix);
      if (want === undefined) this.applied.delete(prefix);
      else this.applied.set(prefix, want); // also a new node name with the same next hop, as the list shows it
    }
    this.touched.clear();
  }

  /** The routes the sink has, by prefix. */
  list(): Route[] {
    return [...this.applied.values()].sort(byPrefix);
  }

  get size(): number {
    return this.applied.size;
  }

  private claim(key: string, record: IpcacheRecord): void {
    const route = hostRoute(this.nodes, record);
    if (route === undefined) return;
    const claimants = this.claims.get(route.prefix) ?? new Map<string, Route>();
    claimants.set(key, route);
    this.claims.set(route.prefix, claimants);
    this.claimOf.set(key, route.prefix);
    this.settle(route.prefix);
  }

  private withdraw(key: string): void {
    const prefix = this.claimOf.get(key);
    if (prefix === undefined) return;
    this.claimOf.delete(key);
    const claimants = this.claims.get(prefix)!;
    claimants.delete(key);
    if (claimants.size === 0) this.claims.delete(prefix);
    this.settle(prefix);
  }

  /** The desired route of `prefix`: its node's pod CIDR route, else the first host route claimed for it. */
  private settle(prefix: string): void {
    const route = this.nodes.routes.get(prefix) ?? this.claims.get(prefix)?.values().next().value;
    if (route === undefined) this.desired.delete(prefix);
    else this.desired.set(prefix, route);
    this.touched.add(prefix);
  }
}
