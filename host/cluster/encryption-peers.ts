/**
 * The ESP path's peers from the cluster's node records: every other node
 * with an IPv4 address (the outer header is IPv4), its pod CIDRs, and the
 * key index it advertises (NodeRecord.encryptionKey), which is what the
 * sender's key choice follows during a rolling update. Pure.
 */
import type { NodeRecord } from "../kvstore/records/node.js";
import type { PeerSpec } from "../encrypt/peers-file.js";

export function peersFromNodes(self: string, nodes: Iterable<NodeRecord>): PeerSpec[] {
  const out: PeerSpec[] = [];
  for (const n of nodes) {
    if (n.name === self) continue;
    const v4 = n.addresses.filter((a) => !a.ip.includes(":"));
    const address = (v4.find((a) => a.type === "InternalIP") ?? v4[0])?.ip;
    const cidrs = [n.ipv4AllocCidr, n.ipv6AllocCidr].filter((c): c is string => c !== undefined);
    if (address === undefined || cidrs.length === 0) continue;
    out.push({ name: n.name, address, cidrs, keyIndex: n.encryptionKey });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
