/**
 * The cluster demo's network: two nodes, each a namespace with its pods
 * (namespaces) behind veths, joined by one veth (direct routing), and an
 * external host beside n1.
 *
 *   <p>-fe     10.211.1.2 ┐                                   ┌ 10.211.2.2 <p>-beb
 *   <p>-other  10.211.1.3 ├ <p>-n1 10.211.0.1 ==veth== 10.211.0.2 <p>-n2 ┤
 *   <p>-bea    10.211.1.4 ┘   │ lxc-ext 10.211.9.1                ┗ 10.211.2.3 <p>-bec
 *                             └── <p>-ext 10.211.9.2
 *
 * Dual-stack: each address has an IPv6 twin (nodes fd00:211::N on the link,
 * pods fd00:211:N::x, gateways fd00:211:N::1/128, ext fd00:211:9::2); every
 * rule and route below exists for both families.
 *
 * A pod has its address as a /32 and a default route via its node's gateway
 * address (10.211.N.1/32 on every lxc veth of node N, Cilium's way); the node
 * routes each pod's /32 to its veth. The node's agent routes its pod CIDR
 * into its TUN (main table) and each remote node's pod CIDR via that node's
 * address (kvstore node records). What makes every packet cross the
 * forwarder is policy routing, as in the single-node demo:
 *
 *   ip rule add iif lxc-<pod>|lxc-ext|<link> lookup 100 pref 100
 *   table 100:  default dev <tun> metric 10         (attachTun, after each agent start)
 *               unreachable default metric 65535    (fail closed while no agent runs)
 *
 * So a packet from a local pod, from ext or from the other node goes into
 * the TUN (unless it is for the node itself: the local table comes first);
 * what the forwarder writes back arrives with iif <tun> and the main table
 * takes it to a pod's veth, ext or the other node.
 *
 * ext is outside the cluster: it routes only the nodes' link (10.211.0.0/24,
 * via n1), so it can answer nothing but a node's address and a pod reaches
 * it only masqueraded. Each agent masquerades its pods' traffic to ext to
 * its node's address (masquerade.ts, --datapath-options). The replies come
 * back addressed to the node itself, which the local table would take, so
 * each node steers them into its TUN (host/demo/masquerade-steering.ts:
 * local rule moved to pref 50, pref 10 rules into table 101 = default dev
 * <tun>): n1 for what arrives on lxc-ext for 10.211.0.1, n2 for what arrives
 * on its link for 10.211.0.2 (n1 forwards ext's replies to n2 untranslated).
 * The translated packets leave the TUN from the node's own address, so the
 * TUN accepts local sources (accept_local=1, attachTun).
 */
import { NetnsLab } from "../../sys/netns/lab.js";
import { ip, linkExists } from "../../sys/netns/iproute2.js";
import { startAgent } from "../agents.js";
import type { NetnsProcess } from "../../sys/netns/process.js";
import { MASQUERADE_TABLE, moveLocalRule, pinNeighbours, steerMasqueradeReplies } from "../masquerade-steering.js";

export const TABLE = 100;
export const RULE_PREF = 100;
export const TUN_NAME = "mbc0";

export type NodeName = "n1" | "n2";
export type PodName = "fe" | "other" | "bea" | "beb" | "bec" | "ext";

export interface ClusterNode {
  name: NodeName;
  ns: string;
  /** Its addresses on the link between the nodes (--node-ip, one per family). */
  ip: string;
  ip6: string;
  podCidr: string;
  podCidr6: string;
  /** The pods' gateway (on every lxc veth), per family. */
  gateway: string;
  gateway6: string;
  /** Its end of the link between the nodes (--route-device). */
  link: string;
}

export interface ClusterPod {
  name: PodName;
  ns: string;
  node: NodeName;
  ip: string;
  ip6: string;
  /** The node's end of its veth. */
  nodeIf: string;
}

const NODES: Record<NodeName, { n: number }> = { n1: { n: 1 }, n2: { n: 2 } };
const PODS: Array<{ name: PodName; node: NodeName; ip: string; ip6: string }> = [
  { name: "fe", node: "n1", ip: "10.211.1.2", ip6: "fd00:211:1::2" },
  { name: "other", node: "n1", ip: "10.211.1.3", ip6: "fd00:211:1::3" },
  { name: "bea", node: "n1", ip: "10.211.1.4", ip6: "fd00:211:1::4" },
  { name: "beb", node: "n2", ip: "10.211.2.2", ip6: "fd00:211:2::2" },
  { name: "bec", node: "n2", ip: "10.211.2.3", ip6: "fd00:211:2::3" },
];
export const EXT = { ip: "10.211.9.2", gateway: "10.211.9.1", cidr: "10.211.9.0/24", ip6: "fd00:211:9::2", gateway6: "fd00:211:9::1", cidr6: "fd00:211:9::/64" } as const;
/** The link between the nodes: the only prefixes ext routes (masquerading makes them enough). */
export const NODE_LINK_CIDR = "10.211.0.0/24";
export const NODE_LINK_CIDR6 = "fd00:211::/64";
export const SERVICE_VIP = "10.96.211.10";
export const SERVICE_VIP6 = "fd00:96:211::10";
export const SERVICE_PORT = 80;
export const BACKEND_PORT = 8080;
export const EXT_PORT = 9000;

export class ClusterTopology {
  readonly lab: NetnsLab;
  readonly nodes: Record<NodeName, ClusterNode>;
  readonly pods: Record<PodName, ClusterPod>;
  /** Where the control plane (operator, apply) runs: a namespace with nothing in it. */
  readonly control: string;

  private constructor(readonly prefix: string) {
    this.lab = new NetnsLab(prefix);
    const node = (name: NodeName): ClusterNode => {
      const { n } = NODES[name];
      return {
        name, ns: `${prefix}-${name}`, ip: `10.211.0.${n}`, ip6: `fd00:211::${n}`, podCidr: `10.211.${n}.0/24`, podCidr6: `fd00:211:${n}::/64`,
        gateway: `10.211.${n}.1`, gateway6: `fd00:211:${n}::1`, link: `${prefix}-l${n}`,
      };
    };
    this.nodes = { n1: node("n1"), n2: node("n2") };
    const pods = Object.fromEntries(PODS.map((p) => [p.name, { ...p, ns: `${prefix}-${p.name}`, nodeIf: `lxc-${p.name}` }]));
    pods.ext = { name: "ext", node: "n1", ip: EXT.ip, ip6: EXT.ip6, ns: `${prefix}-ext`, nodeIf: "lxc-ext" };
    this.pods = pods as Record<PodName, ClusterPod>;
    this.control = `${prefix}-ctl`;
  }

  /** Builds everything; on failure removes what was made and rethrows. */
  static async create(prefix: string): Promise<ClusterTopology> {
    const t = new ClusterTopology(prefix);
    try {
      await t.#build();
    } catch (err) {
      await t.lab.teardown();
      throw err;
    }
    return t;
  }

  async #build(): Promise<void> {
    const { lab } = this;
    lab.addNamespace("ctl");
    for (const node of Object.values(this.nodes)) {
      lab.addNamespace(node.name);
      for (const [key, value] of [
        ["net.ipv4.ip_forward", 1],
        ["net.ipv4.conf.all.rp_filter", 0],
        ["net.ipv4.conf.default.rp_filter", 0],
        ["net.ipv4.conf.all.send_redirects", 0],
        ["net.ipv4.conf.default.send_redirects", 0],
        ["net.ipv6.conf.all.forwarding", 1],
      ] as const) lab.sysctl(node.ns, key, value);
      for (const family of [4, 6] as const) lab.addRoute(node.ns, family, ["unreachable", "default", "metric", "65535", "table", String(TABLE)]);
    }
    const { n1, n2 } = this.nodes;
    lab.addVeth({ ns: n1.ns, name: n1.link }, { ns: n2.ns, name: n2.link });
    for (const node of [n1, n2]) {
      lab.addAddress(node.ns, node.link, `${node.ip}/24`);
      lab.addAddress(node.ns, node.link, `${node.ip6}/64`, { nodad: true });
      lab.linkUp(node.ns, node.link);
      for (const family of [4, 6] as const) lab.addRule(node.ns, family, ["iif", node.link, "lookup", String(TABLE), "pref", String(RULE_PREF)]);
    }
    // n2 reaches ext through n1 (n1 reaches it on its own veth).
    lab.addRoute(n2.ns, 4, [EXT.cidr, "via", n1.ip, "dev", n2.link]);
    lab.addRoute(n2.ns, 6, [EXT.cidr6, "via", n1.ip6, "dev", n2.link]);
    for (const pod of Object.values(this.pods)) {
      const node = this.nodes[pod.node];
      lab.addNamespace(pod.name);
      lab.addVeth({ ns: node.ns, name: pod.nodeIf }, { ns: pod.ns, name: "eth0" });
      lab.linkUp(node.ns, pod.nodeIf);
      lab.linkUp(pod.ns, "eth0");
      for (const family of [4, 6] as const) lab.addRule(node.ns, family, ["iif", pod.nodeIf, "lookup", String(TABLE), "pref", String(RULE_PREF)]);
      if (pod.name === "ext") {
        lab.addAddress(node.ns, pod.nodeIf, `${EXT.gateway}/24`);
        lab.addAddress(node.ns, pod.nodeIf, `${EXT.gateway6}/64`, { nodad: true });
        lab.addAddress(pod.ns, "eth0", `${EXT.ip}/24`);
        lab.addAddress(pod.ns, "eth0", `${EXT.ip6}/64`, { nodad: true });
        lab.addRoute(pod.ns, 4, [NODE_LINK_CIDR, "via", EXT.gateway]);
        lab.addRoute(pod.ns, 6, [NODE_LINK_CIDR6, "via", EXT.gateway6]);
        continue;
      }
      lab.addAddress(node.ns, pod.nodeIf, `${node.gateway}/32`);
      lab.addAddress(node.ns, pod.nodeIf, `${node.gateway6}/128`, { nodad: true });
      lab.addRoute(node.ns, 4, [`${pod.ip}/32`, "dev", pod.nodeIf]);
      lab.addRoute(node.ns, 6, [`${pod.ip6}/128`, "dev", pod.nodeIf]);
      lab.addAddress(pod.ns, "eth0", `${pod.ip}/32`);
      lab.addAddress(pod.ns, "eth0", `${pod.ip6}/128`, { nodad: true });
      lab.addRoute(pod.ns, 4, [node.gateway, "dev", "eth0", "scope", "link"]);
      lab.addRoute(pod.ns, 4, ["default", "via", node.gateway]);
      lab.addRoute(pod.ns, 6, [node.gateway6, "dev", "eth0"]);
      lab.addRoute(pod.ns, 6, ["default", "via", node.gateway6]);
    }
    // Replies to masqueraded flows into the TUN (see the file comment).
    for (const family of [4, 6] as const) {
      for (const node of [n1, n2]) moveLocalRule(lab, node.ns, family);
      steerMasqueradeReplies(lab, n1.ns, family, this.pods.ext.nodeIf, family === 4 ? n1.ip : n1.ip6);
      steerMasqueradeReplies(lab, n2.ns, family, n2.link, family === 4 ? n2.ip : n2.ip6);
    }
    for (const pod of Object.values(this.pods)) {
      await lab.waitUp(this.nodes[pod.node].ns, pod.nodeIf);
      await lab.waitUp(pod.ns, "eth0");
    }
    for (const node of [n1, n2]) await lab.waitUp(node.ns, node.link);
    // IPv6 neighbour discovery to a node's address would be steered through the TUN like a reply
    // (and ND ignores what arrives with its hop limit decremented): the ends of the links that
    // carry steered traffic pin each other's link-layer address.
    pinNeighbours(n1.ns, n1.link, n1.ip6, n2.ns, n2.link, n2.ip6);
    pinNeighbours(n1.ns, this.pods.ext.nodeIf, EXT.gateway6, this.pods.ext.ns, "eth0", EXT.ip6);
  }

  /**
   * The node's agent created its TUN (it runs in the node's namespace):
   * table 100 into it. A restarted agent has a new device, so this runs
   * after every start; the route goes with the device.
   */
  attachTun(node: NodeName): void {
    const { ns } = this.nodes[node];
    if (!linkExists(TUN_NAME, ns)) throw new Error(`${ns} has no ${TUN_NAME}: the agent did not create it`);
    this.lab.sysctl(ns, `net/ipv4/conf/${TUN_NAME}/rp_filter`, 0);
    // Masqueraded packets come out of the TUN from the node's own address (see the file comment).
    this.lab.sysctl(ns, `net/ipv4/conf/${TUN_NAME}/accept_local`, 1);
    for (const family of ["-4", "-6"]) {
      ip("-n", ns, family, "route", "replace", "default", "dev", TUN_NAME, "metric", "10", "table", String(TABLE));
      ip("-n", ns, family, "route", "replace", "default", "dev", TUN_NAME, "table", String(MASQUERADE_TABLE));
    }
  }

  /** Starts the traffic agent (host/demo/agent.ts) in a pod. */
  traffic(pod: PodName, args: Array<string | number>, limitMs = 8000): NetnsProcess {
    return startAgent(this.lab, this.pods[pod].ns, args, { limitMs });
  }

  /**
   * Each pod pings its gateway (answered by the node itself): afterwards both
   * ends know each other's link-layer address, so first packets do not wait.
   */
  async resolveNeighbours(): Promise<void> {
    await Promise.all(Object.values(this.pods).flatMap((p, i) => [
      this.traffic(p.name, ["ping", p.name === "ext" ? EXT.gateway : this.nodes[p.node].gateway, 4200 + i, 1]).result(8_000),
      this.traffic(p.name, ["ping", p.name === "ext" ? EXT.gateway6 : this.nodes[p.node].gateway6, 4300 + i, 1]).result(8_000),
    ]));
  }

  async teardown(): Promise<string[]> {
    return this.lab.teardown();
  }
}
