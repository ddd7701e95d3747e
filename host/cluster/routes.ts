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

/**
 * NodeRoutes kept up to date one node record at a time (`set`), so that a
 * node joining, leaving or moving costs that node's routes and the ipcache
 * entries on its addresses, not every route again: a burst of 500 nodes
 * joining a 5,500-node cluster rebuilt 5,500 routes and re-judged every
 * ipcache entry once per round on every agent (docs/scale.md).
 *
 * A pod CIDR or an address two nodes claim (a misconfigured cluster) is
 * answered by the node that claimed it first and still does.
 */
export class NodeRouteIndex implements NodeRoutes {
  readonly routes = new Map<string, Route>();
  readonly cidrsByNode = new Map<string, Prefix[]>();
  readonly byAddress = new Map<string, string>();
  /** Node records by their store key (a deleted key's record is still needed to withdraw its claims). */
  private readonly records = new Map<string, NodeRecord>();
  /** Pod CIDR -> (node name -> its route there), in claim order. */
  private readonly cidrClaims = new Map<string, Map<string, Route>>();
  /** Address -> the names of the nodes that have it, in claim order. */
  private readonly addressClaims = new Map<string, Set<string>>();

  constructor(readonly self: string, private readonly opts: RouteOptions = {}) {}

  /**
   * Node record `key` is now `record` (undefined: deleted). Answers the
   * addresses and pod CIDRs whose answer may have changed: ipcache entries on
   * those addresses and routes of those prefixes need deciding again.
   */
  set(key: string, record: NodeRecord | undefined): { addresses: Set<string>; cidrs: Set<string> } {
    const addresses = new Set<string>();
    const cidrs = new Set<string>();
    const old = this.records.get(key);
    if (old !== undefined) {
      for (const a of old.addresses) {
        addresses.add(a.ip);
        this.addressClaims.get(a.ip)?.delete(old.name);
      }
      for (const cidr of [old.ipv4AllocCidr, old.ipv6AllocCidr]) {
        if (cidr === undefined) continue;
        cidrs.add(cidr);
        this.cidrClaims.get(cidr)?.delete(old.name);
      }
      this.cidrsByNode.delete(old.name);
      this.records.delete(key);
    }
    if (record !== undefined) {
      this.records.set(key, record);
      for (const a of record.addresses) {
        addresses.add(a.ip);
        const claims = this.addressClaims.get(a.ip) ?? new Set<string>();
        claims.add(record.name);
        this.addressClaims.set(a.ip, claims);
      }
      if (record.name !== this.self) {
        // ESP peers are judged one node at a time (peersFromNodes keeps a node with an IPv4 address and a pod CIDR)
        const sealed = this.opts.encryptInto !== undefined && peersFromNodes(this.self, [record]).length > 0;
        for (const [cidr, fam] of [[record.ipv4AllocCidr, 4], [record.ipv6AllocCidr, 6]] as const) {
          if (cidr === undefined) continue;
          const via = nodeAddress(record, fam);
          if (via === undefined) continue;
          cidrs.add(cidr);
          const claims = this.cidrClaims.get(cidr) ?? new Map<string, Route>();
          claims.set(record.name, sealed ? { prefix: cidr, via, node: record.name, device: this.opts.encryptInto } : { prefix: cidr, via, node: record.name });
          this.cidrClaims.set(cidr, claims);
          const prefix = parsePrefix(cidr, `node ${record.name}`);
          const own = this.cidrsByNode.get(record.name);
          if (own) own.push(prefix);
          else this.cidrsByNode.set(record.name, [prefix]);
        }
      }
    }
    for (const ip of addresses) answerFirstClaim(this.addressClaims, this.byAddress, ip);
    for (const cidr of cidrs) answerFirstClaim(this.cidrClaims, this.routes, cidr);
    return { addresses, cidrs };
  }
}

/** `answers` for `key` becomes its first claimant still there; with none left, both forget the key. */
function answerFirstClaim<T>(claims: Map<string, { values(): IterableIterator<T> }>, answers: Map<string, T>, key: string): void {
  const first: T | undefined = claims.get(key)?.values().next().value;
  if (first === undefined) {
    answers.delete(key);
    claims.delete(key);
  } else answers.set(key, first);
}

export function nodeRoutes(self: string, nodeRecords: Iterable<NodeRecord>, opts: RouteOptions = {}): NodeRoutes {
  const index = new NodeRouteIndex(self, opts);
  for (const n of nodeRecords) index.set(n.name, n);
  return index;
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
