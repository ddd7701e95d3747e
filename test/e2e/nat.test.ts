/**
 * End to end: bpf_host on a node's external device masquerading two client
 * namespaces behind the node's address, with real TCP, UDP and ping from both
 * clients using the same source port (and the same echo identifier), to a
 * server outside the cluster that has no route back to the clients. Then the
 * same traffic through Linux's own netfilter MASQUERADE (nft) on the same
 * device, as the reference.
 *
 *   mbr-nat-<pid>-c1  eth0 10.77.1.2  fd00:77:1::2 ──┐
 *                                                    nc1 / nc2   mbr-nat-<pid>-node   ext0 192.0.2.1 ── eth0 192.0.2.100  mbr-nat-<pid>-srv
 *   mbr-nat-<pid>-c2  eth0 10.77.2.2  fd00:77:2::2 ──┘          (forwarding)              2001:db8:77::1     2001:db8:77::100
 *                                                                 ^ bpf_host: to_netdev at tc egress, from_netdev at tc ingress
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { AttachedDatapath } from "../../host/kernel/attached.js";
import { NetnsLab } from "../../host/sys/netns/lab.js";
import { netnsList, withNetns, ip } from "../../host/sys/netns/index.js";
import { startAgent } from "../../host/demo/agents.js";
import { run } from "../../host/cli/main.js";
import type { DatapathOptions } from "../../host/config.js";
import { e2eUnavailable } from "./netns.js";
import { describeIf } from "../support/describe-if.js";
import { pause } from "../support/wait-for.js";

const TAG = String(process.pid);
const PIN_DIR = `/sys/fs/bpf/mbr-nat-${TAG}`;
const TRAFFIC = join(import.meta.dirname, "nat-traffic.mjs");
const SERVER4 = "192.0.2.100", SERVER6 = "2001:db8:77::100";
const MASQ4 = "192.0.2.1", MASQ6 = "2001:db8:77::1";
const CLIENT_PORT = 40000, ECHO_ID = 777;

const OPTIONS: DatapathOptions = {
  conntrack: { tcpEntries: 4096, otherEntries: 4096 },
  nat: {
    ipv4: { address: MASQ4, clusterCidrs: ["10.77.0.0/16"] },
    ipv6: { address: MASQ6, clusterCidrs: ["fd00:77::/32"] },
    entries: 4096,
    seed: 77,
  },
};

const nftMissing = (): string | undefined => (spawnSync("nft", ["--version"]).status === 0 ? undefined : "nft is not installed (Debian: nftables)");

interface Peer { remoteAddress: string; remotePort: number }
interface Observed { tcp: Peer[]; udp: Peer[]; echoIds: number[] }

describeIf("masquerading between network namespaces", e2eUnavailable(), () => {
  const lab = new NetnsLab(`mbr-nat-${TAG}`);
  const ns = { c1: `${lab.prefix}-c1`, c2: `${lab.prefix}-c2`, node: `${lab.prefix}-node`, srv: `${lab.prefix}-srv` };
  let dp: AttachedDatapath | undefined;
  const results: Record<string, Record<4 | 6, Observed>> = {};

  const node = (script: string[], target: string, label: string) =>
    lab.spawn(target, [process.execPath, TRAFFIC, ...script], { label: `${target}: ${label}` });

  function detach(): void {
    if (!dp) return;
    const d = dp;
    dp = undefined;
    if (netnsList().includes(ns.node)) withNetns(ns.node, () => d.detach());
    else d.object.close();
  }

  beforeAll(async () => {
    for (const n of ["c1", "c2", "node", "srv"]) lab.addNamespace(n);
    lab.sysctl(ns.node, "net.ipv4.ip_forward", 1);
    lab.sysctl(ns.node, "net.ipv6.conf.all.forwarding", 1);
    for (const [i, c] of [[1, ns.c1], [2, ns.c2]] as const) {
      lab.addVeth({ ns: ns.node, name: `nc${i}` }, { ns: c, name: "eth0" });
      lab.addAddress(ns.node, `nc${i}`, `10.77.${i}.1/24`);
      lab.addAddress(ns.node, `nc${i}`, `fd00:77:${i}::1/64`, { nodad: true });
      lab.addAddress(c, "eth0", `10.77.${i}.2/24`);
      lab.addAddress(c, "eth0", `fd00:77:${i}::2/64`, { nodad: true });
      lab.linkUp(ns.node, `nc${i}`);
      lab.linkUp(c, "eth0");
      lab.addRoute(c, 4, ["default", "via", `10.77.${i}.1`]);
      lab.addRoute(c, 6, ["default", "via", `fd00:77:${i}::1`]);
    }
    lab.addVeth({ ns: ns.node, name: "ext0" }, { ns: ns.srv, name: "eth0" });
    lab.addAddress(ns.node, "ext0", `${MASQ4}/24`);
    lab.addAddress(ns.node, "ext0", `${MASQ6}/64`, { nodad: true });
    lab.addAddress(ns.srv, "eth0", `${SERVER4}/24`);
    lab.addAddress(ns.srv, "eth0", `${SERVER6}/64`, { nodad: true });
    lab.linkUp(ns.node, "ext0");
    lab.linkUp(ns.srv, "eth0");
    for (const [n, dev] of [[ns.node, "nc1"], [ns.node, "nc2"], [ns.node, "ext0"], [ns.c1, "eth0"], [ns.c2, "eth0"], [ns.srv, "eth0"]] as const) await lab.waitUp(n, dev);
  }, 30_000);

  afterAll(async () => {
    try { detach(); } catch { /* the namespace goes anyway */ }
    const problems = await lab.teardown();
    rmSync(PIN_DIR, { recursive: true, force: true });
    expect(problems).toEqual([]);
    expect(netnsList().filter((n) => n.startsWith(lab.prefix))).toEqual([]);
  }, 30_000);

  /**
   * Both clients: TCP and UDP from the same source port, ping with the same
   * identifier, to the server. The echo identifiers are the caller's to read
   * (from membrane's NAT map or netfilter's conntrack) once the pings are done.
   */
  async function traffic(family: 4 | 6): Promise<Observed> {
    const server = family === 4 ? SERVER4 : SERVER6;
    const tcpServer = node(["tcp-server", server, "8080", "2"], ns.srv, "tcp-server");
    const udpServer = node(["udp-server", server, "9090", "2"], ns.srv, "udp-server");
    await Promise.all([tcpServer.ready(), udpServer.ready()]);
    const clients = [ns.c1, ns.c2].flatMap((c) => [
      node(["tcp-client", server, "8080", String(CLIENT_PORT), `hello from ${c}`], c, "tcp-client"),
      node(["udp-client", server, "9090", String(CLIENT_PORT), `hello from ${c}`], c, "udp-client"),
    ]);
    const replies = await Promise.all(clients.map((p) => p.result<{ reply: string }>(10_000)));
    expect(replies.map((r) => r.reply).sort()).toEqual([ns.c1, ns.c1, ns.c2, ns.c2].map((c) => `echo:hello from ${c}`).sort());
    // The second ping starts 50 ms after the first: the flows still overlap, but their first
    // packets do not race to the same translated tuple at one instant, which netfilter's
    // conntrack may resolve by dropping one (seen once in CI: a reference-run ping went unanswered).
    const pings = [startAgent(lab, ns.c1, ["ping", server, ECHO_ID, 3, 200], { limitMs: 8000 })];
    await pause(50); // pacing: the stagger described above
    pings.push(startAgent(lab, ns.c2, ["ping", server, ECHO_ID, 3, 200], { limitMs: 8000 }));
    const pinged = await Promise.all(pings.map((p) => p.result<{ replies: number }>(10_000)));
    expect(pinged.map((p) => p.replies)).toEqual([3, 3]);
    const tcp = (await tcpServer.result<{ peers: Peer[] }>(10_000)).peers;
    const udp = (await udpServer.result<{ peers: Peer[] }>(10_000)).peers;
    return { tcp, udp, echoIds: [] };
  }

  async function natList(): Promise<Array<{ table: string; dir: string; proto: number; sport: number; dport: number; toPort: number }>> {
    const out: string[] = [];
    const code = await run(["bpf", "nat", "list", "--pin-dir", PIN_DIR, "--json"], { out: (l) => out.push(l), err: () => {} });
    expect(code).toBe(0);
    return out.map((l) => JSON.parse(l));
  }

  function expectMasqueraded(o: Observed, masq: string): void {
    for (const peers of [o.tcp, o.udp]) {
      expect(peers.map((p) => p.remoteAddress)).toEqual([masq, masq]); // no route back to the clients: only the node's address works
      const ports = peers.map((p) => p.remotePort);
      expect(new Set(ports).size).toBe(2); // distinct translations
      expect(ports).toContain(CLIENT_PORT); // the first keeps its port
    }
  }

  it("membrane (bpf_host on the external device): distinct translated ports, replies reach both clients", async () => {
    dp = withNetns(ns.node, () => AttachedDatapath.attach({ ifname: "ext0", point: "netdev", options: OPTIONS, pinDir: PIN_DIR }));
    results.membrane = {} as Record<4 | 6, Observed>;
    for (const family of [4, 6] as const) {
      const proto = family === 4 ? 1 : 58;
      const o = await traffic(family);
      // Read the echo identifiers from the kernel's NAT map (the pings are done by now, their entries live on for 60 s).
      const ids = (await natList()).filter((r) => r.proto === proto && r.dir === "egress" && r.dport === ECHO_ID).map((r) => r.toPort);
      o.echoIds = ids;
      results.membrane[family] = o;
      expectMasqueraded(o, family === 4 ? MASQ4 : MASQ6);
      expect(new Set(ids).size).toBe(2);
      for (const id of ids) expect(id).toBeGreaterThanOrEqual(1024); // 777 lies below the range: clamped into it
    }
    // Each TCP/UDP mapping is a pair: the map holds both halves of every flow.
    const list = await natList();
    expect(list.filter((r) => r.dir === "egress").length).toBe(list.filter((r) => r.dir === "ingress").length);
    // Flushing empties the kernel's tables through the pins.
    const out: string[] = [];
    expect(await run(["bpf", "nat", "flush", "--pin-dir", PIN_DIR], { out: (l) => out.push(l), err: () => {} })).toBe(0);
    expect(await natList()).toEqual([]);
    detach();
  }, 60_000);

  describeIf("reference: Linux netfilter MASQUERADE (nft)", nftMissing(), () => {
    it("the same traffic through nft masquerade on the same device", async () => {
      detach(); // when the membrane test failed halfway
      const nft = (rules: string) => {
        const r = spawnSync("ip", ["netns", "exec", ns.node, "nft", "-f", "-"], { input: rules });
        if (r.status !== 0) throw new Error(`nft: ${r.stderr}`);
      };
      nft(["table inet mbrnat {", "  chain post {", "    type nat hook postrouting priority srcnat;", '    oifname "ext0" masquerade', "  }", "}"].join("\n"));
      results.linux = {} as Record<4 | 6, Observed>;
      for (const family of [4, 6] as const) {
        const o = await traffic(family);
        const ct = spawnSync("ip", ["netns", "exec", ns.node, "cat", "/proc/net/nf_conntrack"], { encoding: "utf8" }).stdout ?? "";
        // Echo identifiers as the kernel translated them: reply-direction "id=" of the icmp entries.
        o.echoIds = ct.split("\n").filter((l) => l.startsWith(`ipv${family} `) && / icmp(v6)? /.test(l) && l.includes(`id=${ECHO_ID} `))
          .map((l) => Number([...l.matchAll(/id=(\d+)/g)][1]?.[1]));
        expect(new Set(o.echoIds).size).toBe(2); // unique translations there too
        results.linux[family] = o;
        expectMasqueraded(o, family === 4 ? MASQ4 : MASQ6);
      }
      console.log(`NAT reference: ${JSON.stringify(results)}`);
      ip("-n", ns.node, "link", "show", "ext0"); // the device is still there: nothing else was changed
    }, 60_000);
  });
});
