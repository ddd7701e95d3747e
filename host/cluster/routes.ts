/**
 * Direct routing: the routes that send remote pods' traffic toward the node
 * hosting them. One route per remote node's pod CIDR via that node's
 * address, and a host route for a remote pod outside its node's CIDR (a pod
 * address from elsewhere, as the ipcache says). Computing is pure; putting
 * routes in the kernel is the RouteSink's business (datapath-sink.ts).
 *
 * With encryption on, a remote node's pod CIDRs are routed into the TUN
 * device instead of over the underlay: the ESP path there
 * (host/forwarder/esp-path.ts) seals what goes to an ESP peer's pod CIDR, and
 * a route via the underlay would send it past the forwarder in the clear.
 * Only nodes the ESP path has as peers (peersFromNodes: an IPv4 address) get
 * such a route; anything else would come back out of the TUN unsealed and
 * loop.
 */
import { ipv4TextWithin, parsePrefix, prefixContains, type Prefix } from "../packet/cidr.js";
import type { IpcacheRecord } from "../kvstore/records/ipcache.js";
import type { NodeRecord } from "../kvstore/records/node.js";
import { peersFromNodes } from "./encryption-peers.js";

export interface Route {
  /** Destination prefix, "10.2.0.0/24". */
  prefix: string;
  /** The remote node's address. */
  via: string;
  /** The node name, for people. */
  node: string;
  /** Set when the route goes into this device (the encrypting TUN) rather than via the node's address. */
  device?: string;
}

export interface RouteOptions {
  /** Encryption is on: remote ESP peers' pod CIDRs go into this device (the TUN), to be sealed there. */
  encryptInto?: string;
}

const family = (ip: string): 4 | 6 => (ip.includes(":") ? 6 : 4);

function nodeAddress(node: NodeRecord, fam: 4 | 6): string | undefined {
  const internal = node.addresses.filter((a) => family(a.ip) === fam);
  return (internal.find((a) => a.type === "InternalIP") ?? internal[0])?.ip;
}

/**
 * What the other nodes' records decide: the route to each remote node's pod
 * CIDRs, and the index an ipcache entry's own route is judged against.
 */
export interface NodeRoutes {
  readonly self: string;
  /** Pod CIDR -> the route via its node. */
  readonly routes: ReadonlyMap<string, Route>;
  /** Each remote node's own pod CIDRs: an ipcache entry is checked against its owner's only (a scan over every
   * node's CIDRs per entry was nodes x pods string compares a round: minutes at 5,500 nodes and 100,000 pods). */
  readonly cidrsByNode: ReadonlyMap<string, Prefix[]>;
  /** Node address -> node name. */
  readonly byAddress: ReadonlyMap<string, string>;
}

export function nodeRoutes(self: string, nodeRecords: Iterable<NodeRecord>, opts: RouteOptions = {}): NodeRoutes {
  const nodes = [...nodeRecords];
  const sealed = new Set(opts.encryptInto === undefined ? [] : peersFromNodes(self, nodes).map((p) => p.name));
  const routes = new Map<string, Route>();
  const cidrsByNode = new Map<string, Prefix[]>();
  const byAddress = new Map<string, string>();
  for (const n of nodes) {
    for (const a of n.addresses) byAddress.set(a.ip, n.name);
    if (n.name === self) continue;
    for (const [cidr, fam] of [[n.ipv4AllocCidr, 4], [n.ipv6AllocCidr, 6]] as const) {
      if (cidr === undefined) continue;
      const via = nodeAddress(n, fam);
      if (via === undefined) continue;
      routes.set(cidr, sealed.has(n.name) ? { prefix: cidr, via, node: n.name, device: opts.encryptInto } : { prefix: cidr, via, node: n.name });
      const own = cidrsByNode.get(n.name);
      const prefix = parsePrefix(cidr, `node ${n.name}`);
      if (own) own.push(prefix);
      else cidrsByNode.set(n.name, [prefix]);
    }
  }
  return { self, routes, cidrsByNode, byAddress };
}

/**
 * The host route an ipcache entry needs: a remote pod outside its node's pod
 * CIDRs, or on a host no node record names. Undefined when it needs none; a
 * node's pod CIDR route of the same prefix wins over it (the caller's check).
 */
export function hostRoute(nodes: NodeRoutes, e: IpcacheRecord): Route | undefined {
  if (e.hostIp === undefined) return undefined;
  const owner = nodes.byAddress.get(e.hostIp);
  if (owner === nodes.self) return undefined;
  if (owner !== undefined) {
    const own = nodes.cidrsByNode.get(owner);
    if (own !== undefined && own.some((c) => ipv4TextWithin(c, e.prefix) ?? prefixContains(c, parsePrefix(e.prefix, "ipcache")))) return undefined;
  }
  return { prefix: e.prefix, via: e.hostIp, node: owner ?? e.hostIp };
}

export const byPrefix = (a: Route, b: Route): number => (a.prefix < b.prefix ? -1 : a.prefix > b.prefix ? 1 : 0);

/** The route set for node `self`, from the other nodes' records and the ipcache. */
export function computeRoutes(self: string, nodeRecords: Iterable<NodeRecord>, ipcache: Iterable<IpcacheRecord>, opts: RouteOptions = {}): Route[] {
  const nodes = nodeRoutes(self, nodeRecords, opts);
  const out = new Map(nodes.routes);
  for (const e of ipcache) {
    const route = hostRoute(nodes, e);
    if (route !== undefined && !out.has(route.prefix)) out.set(route.prefix, route);
  }
  return [...out.values()].sort(byPrefix);
}

export interface RouteDiff {
  add: Route[];
  remove: Route[];
}
