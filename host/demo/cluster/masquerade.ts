/**
 * The cluster demo's masquerading: what a node's pods send outside the
 * cluster (to ext) leaves from the node's address. Cluster prefixes are both
 * nodes' pod CIDRs, so pod-to-pod traffic across nodes and service traffic
 * keep their addresses. Handed to each agent as --datapath-options (the
 * state file's `nat` key, host/nat/config.ts); the port range is the one
 * whose replies the topology steers into the TUN.
 */
import type { DatapathOptions } from "../../config.js";
import { NAT_PORTS } from "../masquerade-steering.js";
import type { ClusterNode, ClusterTopology } from "./topology.js";

export function clusterDatapathOptions(topo: ClusterTopology, node: ClusterNode): DatapathOptions {
  const nodes = Object.values(topo.nodes);
  return {
    nat: {
      ipv4: { address: node.ip, clusterCidrs: nodes.map((n) => n.podCidr) },
      ipv6: { address: node.ip6, clusterCidrs: nodes.map((n) => n.podCidr6) },
      ports: { ...NAT_PORTS },
    },
  };
}
