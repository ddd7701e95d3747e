/**
 * The forwarder's demo and test network: three endpoints around a node, all
 * traffic between them routed by the node through the forwarder's TUN device.
 *
 *   <prefix>-pod1  eth0 10.200.1.2/24 fd00:200:1::2/64 --veth-- lxc-pod1 10.200.1.1 fd00:200:1::1 ┐
 *   <prefix>-pod2  eth0 10.200.2.2/24 fd00:200:2::2/64 --veth-- lxc-pod2 10.200.2.1 fd00:200:2::1 ├ <prefix>-node
 *   <prefix>-ext   eth0 10.200.9.2/24 fd00:200:9::2/64 --veth-- lxc-ext  10.200.9.1 fd00:200:9::1 ┘   + the TUN
 *
 * Each endpoint's default route (both families) is its node address. In the
 * node: forwarding on, rp_filter off, redirects off, and policy routing:
 *
 *   ip rule add iif lxc-<x> lookup 100 pref 100     (IPv4 and IPv6, one per veth)
 *   table 100:  default dev <tun> metric 10         (added by attachTun, gone with the device)
 *               unreachable default metric 65535    (fail closed: no forwarder, no forwarding)
 *
 * So every packet arriving from a veth goes into the TUN, unless it is for
 * the node itself (the local table's rule, pref 0, comes first: ARP/ND and
 * pings to the gateway never reach the forwarder). What the forwarder writes
 * back arrives with iif <tun>, matches no rule of ours, and the main table's
 * connected routes take it to the right veth. Without a forwarder (stopped,
 * restarting) the packets hit the unreachable route: connectivity is gone,
 * visibly, instead of bypassing the datapath.
 *
 * With `masquerade` (the demo, the forwarder's end-to-end test), ext is an
 * outside host and the forwarder's datapath masquerades pod traffic to it
 * (demo/nat.ts: cluster prefixes = the pods' subnets, masquerade address =
 * the node's address on lxc-ext, gw4/gw6 of ext):
 *
 *   - ext has no default route, only its own subnet: it can answer nothing but
 *     the node's address, so a pod gets a reply only if its packets were
 *     translated (and the reply translated back);
 *   - the translated packets come out of the TUN with a source that is the
 *     node's own address; IPv4 calls that a martian source unless the TUN
 *     accepts local sources (accept_local=1, set by attachTun);
 *   - the replies arrive on lxc-ext addressed to the node itself, which the
 *     local table (rule pref 0) would deliver to the node's own stack. So the
 *     local rule moves to pref 50 and, before it, pref 10 rules send what
 *     can be a reply to a translated flow into table 101 (default dev <tun>,
 *     added by attachTun; empty without a forwarder, so such packets then
 *     fall through to the local table):
 *
 *       ip rule add iif lxc-ext to <gw> ipproto tcp dport 32768-65534 lookup 101 pref 10    (and udp)
 *       ip rule add iif lxc-ext to <gw> ipproto icmp|ipv6-icmp lookup 101 pref 10
 *
 *     The port range is the NAT's (NAT_PORTS): only translated flows use it.
 *     ICMP goes whole (a rule cannot tell an echo reply from a request):
 *     echo requests to the node, which the NAT passes, come back out of the
 *     TUN and reach the local table then (iif <tun>: no pref 10 rule);
 *   - ARP matches no ipproto rule, but IPv6 neighbour discovery is ICMPv6:
 *     an advertisement to the node's address would detour through the TUN
 *     and arrive with its hop limit decremented by the forwarding, and ND
 *     ignores anything below 255. Both ends of the ext link therefore pin
 *     each other's link-layer address (permanent neighbour entries: no
 *     solicitation, no advertisement, no reachability probes).
 *
 * The TUN is created by the forwarder's worker in the caller's namespace
 * (open(2) of /dev/net/tun happens there); attachTun moves it into the node
 * (the worker's fd stays bound to it) and adds its routes. When the
 * forwarder closes the fd the device, and its routes, are gone.
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { NetnsLab } from "../sys/netns/lab.js";
import { libc } from "../sys/libc.js";
import { ip, linkExists } from "../sys/netns/iproute2.js";
import { startAgent, type TrafficAgentOptions } from "./agents.js";
import type { NetnsProcess } from "../sys/netns/process.js";
import { MASQUERADE_TABLE, moveLocalRule, pinNeighbours, steerMasqueradeReplies } from "./masquerade-steering.js";

export { NAT_PORTS } from "./masquerade-steering.js";

export const FORWARD_TABLE = 100;
export const FORWARD_RULE_PREF = 100;
export interface TopologyOptions {
  /** ext is outside the cluster and sees pods only through the node's masquerade address (see above). */
  masquerade?: boolean;
}

export type EndpointName = "pod1" | "pod2" | "ext";

export interface Endpoint {
  name: EndpointName;
  /** Its namespace. */
  ns: string;
  /** Its interface (in ns) and the node's end of the veth (in the node namespace). */
  ifname: string;
  nodeIf: string;
  v4: string;
  v6: string;
  /** Its subnets (the link's prefixes). */
  cidr4: string;
  cidr6: string;
  /** The node's addresses on that veth: the endpoint's default gateways. */
  gw4: string;
  gw6: string;
}

const SUBNETS: Record<EndpointName, number> = { pod1: 1, pod2: 2, ext: 9 };

export class ForwarderTopology {
  readonly lab: NetnsLab;
  readonly node: string;
  readonly endpoints: Record<EndpointName, Endpoint>;
  #tun: string | undefined;

  private constructor(readonly prefix: string, readonly masquerade: boolean) {
    this.lab = new NetnsLab(prefix);
    this.node = `${prefix}-node`;
    const ep = (name: EndpointName): Endpoint => {
      const n = SUBNETS[name];
      return {
        name, ns: `${prefix}-${name}`, ifname: "eth0", nodeIf: `lxc-${name}`,
        v4: `10.200.${n}.2`, v6: `fd00:200:${n}::2`, cidr4: `10.200.${n}.0/24`, cidr6: `fd00:200:${n}::/64`, gw4: `10.200.${n}.1`, gw6: `fd00:200:${n}::1`,
      };
    };
    this.endpoints = { pod1: ep("pod1"), pod2: ep("pod2"), ext: ep("ext") };
  }

  get pod1(): Endpoint { return this.endpoints.pod1; }
  get pod2(): Endpoint { return this.endpoints.pod2; }
  get ext(): Endpoint { return this.endpoints.ext; }

  /** The TUN device attached last, if it is still there. */
  get tun(): string | undefined {
    return this.#tun;
  }

  /**
   * Builds the namespaces, veths, addresses, routes and rules (everything
   * recorded in `lab`); when a step fails, removes what was made and throws.
   */
  static async create(prefix: string, opts: TopologyOptions = {}): Promise<ForwarderTopology> {
    const t = new ForwarderTopology(prefix, opts.masquerade ?? false);
    try {
      await t.#build();
    } catch (err) {
      const problems = await t.teardown();
      if (problems.length) (err as Error).message += `; cleanup: ${problems.join("; ")}`;
      throw err;
    }
    return t;
  }

  async #build(): Promise<void> {
    const { lab, node } = this;
    lab.addNamespace("node");
    // Before the veths exist, so the "default" values are what their devices start with.
    for (const [key, value] of [
      ["net.ipv4.ip_forward", 1],
      ["net.ipv6.conf.all.forwarding", 1],
      ["net.ipv4.conf.all.rp_filter", 0],
      ["net.ipv4.conf.default.rp_filter", 0],
      ["net.ipv4.conf.all.send_redirects", 0],
      ["net.ipv4.conf.default.send_redirects", 0],
    ] as const) lab.sysctl(node, key, value);
    for (const family of [4, 6] as const) {
      lab.addRoute(node, family, ["unreachable", "default", "metric", "65535", "table", String(FORWARD_TABLE)]);
    }
    for (const e of Object.values(this.endpoints)) {
      lab.addNamespace(e.name);
      lab.addVeth({ ns: node, name: e.nodeIf }, { ns: e.ns, name: e.ifname });
      lab.addAddress(node, e.nodeIf, `${e.gw4}/24`);
      lab.addAddress(node, e.nodeIf, `${e.gw6}/64`, { nodad: true });
      lab.addAddress(e.ns, e.ifname, `${e.v4}/24`);
      lab.addAddress(e.ns, e.ifname, `${e.v6}/64`, { nodad: true });
      lab.linkUp(node, e.nodeIf);
      lab.linkUp(e.ns, e.ifname);
      if (!(this.masquerade && e.name === "ext")) {
        lab.addRoute(e.ns, 4, ["default", "via", e.gw4]);
        lab.addRoute(e.ns, 6, ["default", "via", e.gw6]);
      }
      for (const family of [4, 6] as const) {
        lab.addRule(node, family, ["iif", e.nodeIf, "lookup", String(FORWARD_TABLE), "pref", String(FORWARD_RULE_PREF)]);
      }
    }
    if (this.masquerade) this.#steerReplies();
    for (const e of Object.values(this.endpoints)) {
      await lab.waitUp(node, e.nodeIf);
      await lab.waitUp(e.ns, e.ifname);
    }
  }

  /** Masquerade: replies from ext to the node's address into the TUN, ND on the ext link pinned (see the file comment). */
  #steerReplies(): void {
    const { lab, node, ext } = this;
    for (const family of [4, 6] as const) {
      moveLocalRule(lab, node, family);
      steerMasqueradeReplies(lab, node, family, ext.nodeIf, family === 4 ? ext.gw4 : ext.gw6);
    }
    pinNeighbours(node, ext.nodeIf, ext.gw6, ext.ns, ext.ifname, ext.v6);
  }

  /**
   * Moves TUN device `name` from the caller's namespace into the node and
   * routes table 100 into it. The forwarder keeps its fd; closing it removes
   * the device and its routes.
   */
  attachTun(name: string): void {
    const { node } = this;
    if (linkExists(name, node)) throw new Error(`${node} already has a device ${name} (is the previous forwarder still running?)`);
    ip("link", "set", "dev", name, "netns", node);
    this.#tun = name;
    // A device moved into a namespace starts from that namespace's defaults, down.
    this.lab.sysctl(node, `net/ipv4/conf/${name}/rp_filter`, 0);
    // Masqueraded packets come out of the TUN from the node's own address (see the file comment).
    if (this.masquerade) this.lab.sysctl(node, `net/ipv4/conf/${name}/accept_local`, 1);
    ip("-n", node, "link", "set", "dev", name, "up");
    for (const family of [4, 6] as const) {
      ip("-n", node, `-${family}`, "route", "add", "default", "dev", name, "metric", "10", "table", String(FORWARD_TABLE));
      if (this.masquerade) ip("-n", node, `-${family}`, "route", "add", "default", "dev", name, "table", String(MASQUERADE_TABLE));
    }
  }

  /** Whether the TUN last attached is still in the node (it goes when the forwarder closes it). */
  tunPresent(): boolean {
    return this.#tun !== undefined && linkExists(this.#tun, this.node);
  }

  /**
   * After the forwarder has stopped (its worker has exited): waits (bounded)
   * until its TUN is gone from the node. A worker that was terminated between
   * posting "stopped" and closing the device leaves the fd open in this
   * process, and with it the device and its route; that fd is closed here
   * (safe: the thread that used it no longer exists). Returns the fds it had
   * to close (normally none).
   */
  async releaseTun(ms = 5_000): Promise<number[]> {
    const name = this.#tun;
    if (name === undefined) return [];
    const started = Date.now();
    const deadline = started + ms;
    let reclaimed: number[] = [];
    while (this.tunPresent()) {
      // Closing the fd unregisters the device within close(2): still there a moment later means the fd is still open.
      if (!reclaimed.length && Date.now() > started + 250) {
        reclaimed = tunFds().filter((f) => f.iff === name).map((f) => f.fd);
        for (const fd of reclaimed) libc().close(fd);
      }
      if (Date.now() > deadline) throw new Error(`${name} still in ${this.node} ${ms} ms after the forwarder stopped`);
      await new Promise((r) => setTimeout(r, 25));
    }
    this.#tun = undefined;
    return reclaimed;
  }

  /** Starts the traffic agent (agent.ts) in an endpoint's namespace. */
  agent(at: Endpoint, args: Array<string | number>, opts?: TrafficAgentOptions): NetnsProcess {
    return startAgent(this.lab, at.ns, args, opts);
  }

  /**
   * Each endpoint pings its gateway (IPv4 and IPv6): answered by the node
   * itself, never through the TUN, and afterwards both sides know each
   * other's link-layer address, so the first forwarded packets do not wait
   * for neighbour discovery (a first IPv6 solicitation on a fresh veth can go
   * unanswered for a second).
   */
  async resolveNeighbours(): Promise<void> {
    await Promise.all(Object.values(this.endpoints).flatMap((e, i) => [
      this.agent(e, ["ping", e.gw4, 4100 + i, 1]).result(8_000),
      this.agent(e, ["ping", e.gw6, 4110 + i, 1]).result(8_000),
    ]));
  }

  /** Kills the agents, deletes the namespaces (and with them the veths, routes and rules). Returns what could not be removed. */
  async teardown(): Promise<string[]> {
    return this.lab.teardown();
  }

  leftovers(): string[] {
    return this.lab.leftovers();
  }
}

/** This process's open TUN fds and the device each is bound to (/proc/self/fdinfo: "iff:"). */
export function tunFds(): Array<{ fd: number; iff: string | undefined }> {
  const out: Array<{ fd: number; iff: string | undefined }> = [];
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) !== "/dev/net/tun") continue;
      out.push({ fd: Number(fd), iff: /^iff:\s*(\S+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"))?.[1] });
    } catch {
      // closed meanwhile
    }
  }
  return out;
}
