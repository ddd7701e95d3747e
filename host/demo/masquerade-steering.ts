/**
 * Replies to masqueraded flows arrive addressed to the node itself, which the
 * local table (rule pref 0) would deliver to the node's own stack instead of
 * the forwarder that must translate them back. So the local rule moves to
 * LOCAL_RULE_PREF and, before it, rules send what can be such a reply (TCP
 * and UDP to a NAT port, ICMP whole) arriving on `iif` for `to` into
 * MASQUERADE_TABLE, which holds "default dev <tun>" while a forwarder runs
 * (empty otherwise: the packets fall through to the local table). IPv6
 * neighbour discovery to the node's address would take that detour too and
 * arrive with its hop limit decremented, which ND ignores: pinNeighbours
 * pins both ends of such a link instead. Used by
 * the single-node demo (topology.ts, whose file comment has the details) and
 * the cluster demo (cluster/topology.ts).
 */
import { ip } from "../sys/netns/iproute2.js";
import type { NetnsLab } from "../sys/netns/lab.js";

/** Replies from outside to the node's address go through this table into the TUN. */
export const MASQUERADE_TABLE = 101;
export const MASQUERADE_RULE_PREF = 10;
/** Where the local table's rule moves to (from 0), so MASQUERADE_RULE_PREF comes before it. */
export const LOCAL_RULE_PREF = 50;
/**
 * The NAT's port range, the one whose replies are steered into the TUN.
 * From 32768, the start of Linux's ephemeral range: the pods' own source
 * ports lie in it and are kept, and the ports below it stay the node's (such
 * as ESP in UDP on 4500). Echo identifiers below it (ping's are small) are
 * remapped into it, min + id % range first (docs/nat.md), and translated back
 * in the replies. Not up to 65535: the kernel refuses a rule's port range
 * that ends there (fib_rule_port_range_valid wants end < 0xffff).
 */
export const NAT_PORTS = { min: 32768, max: 65534 } as const;
/**
 * ESP in UDP (RFC 3948) between the agents of `membrane demo --encrypt`: the
 * node's own socket, delivered locally by a rule just before the steering
 * ones, so it stays local even if the NAT range is moved to include it.
 */
export const ESP_IN_UDP_PORT = 4500;

/** Moves the local rule of `family` in `ns` to LOCAL_RULE_PREF (once per namespace and family). */
export function moveLocalRule(lab: NetnsLab, ns: string, family: 4 | 6): void {
  // Add the new local rule before removing the old one: the node never goes without local delivery.
  lab.addRule(ns, family, ["pref", String(LOCAL_RULE_PREF), "lookup", "local"]);
  ip("-n", ns, `-${family}`, "rule", "del", "pref", "0", "lookup", "local");
}

/** Rules sending possible replies to translated flows, arriving on `iif` for `to`, into MASQUERADE_TABLE. */
export function steerMasqueradeReplies(lab: NetnsLab, ns: string, family: 4 | 6, iif: string, to: string): void {
  const rule = ["iif", iif, "to", to];
  const steer = ["lookup", String(MASQUERADE_TABLE), "pref", String(MASQUERADE_RULE_PREF)];
  lab.addRule(ns, family, [...rule, "ipproto", "udp", "dport", String(ESP_IN_UDP_PORT), "lookup", "local", "pref", String(MASQUERADE_RULE_PREF - 1)]);
  for (const proto of ["tcp", "udp"]) lab.addRule(ns, family, [...rule, "ipproto", proto, "dport", `${NAT_PORTS.min}-${NAT_PORTS.max}`, ...steer]);
  lab.addRule(ns, family, [...rule, "ipproto", family === 4 ? "icmp" : "ipv6-icmp", ...steer]);
}
/** Each end of a link pins the other's IPv6 address to its link-layer address (no solicitation, no advertisement). */
export function pinNeighbours(nsA: string, devA: string, ipA: string, nsB: string, devB: string, ipB: string): void {
  const mac = (ns: string, dev: string) => /link\/ether ([0-9a-f:]{17})/.exec(ip("-n", ns, "link", "show", "dev", dev))![1]!;
  ip("-n", nsA, "-6", "neigh", "replace", ipB, "lladdr", mac(nsB, devB), "dev", devA, "nud", "permanent");
  ip("-n", nsB, "-6", "neigh", "replace", ipA, "lladdr", mac(nsA, devA), "dev", devB, "nud", "permanent");
}

