/**
 * The demo's masquerading (docs/nat.md): what the pods send to ext, outside
 * the cluster, leaves the node from the node's address on the ext link.
 * Cluster prefixes are the pods' subnets, so pod-to-pod and service traffic
 * keeps its addresses; the port range is the one whose replies the topology
 * steers into the TUN (topology.ts NAT_PORTS).
 */
import type { NatOptions } from "../nat/config.js";
import { NAT_PORTS, type ForwarderTopology } from "./topology.js";

export function demoNat(topo: ForwarderTopology): NatOptions {
  const pods = [topo.pod1, topo.pod2];
  return {
    ipv4: { address: topo.ext.gw4, clusterCidrs: pods.map((p) => p.cidr4) },
    ipv6: { address: topo.ext.gw6, clusterCidrs: pods.map((p) => p.cidr6) },
    ports: { ...NAT_PORTS },
  };
}
