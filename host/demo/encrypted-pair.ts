/**
 * Two nodes, each with one pod, for the encryption test and bench: the pods'
 * traffic to each other goes pod -> node -> the node's forwarder (TUN) ->
 * underlay -> the other node's forwarder -> pod, in both modes:
 *
 *   <prefix>-p1 eth0 10.71.1.2 -- enl1 10.71.1.1 [<prefix>-n1] enu1 192.168.71.1 ==underlay== enu2 192.168.71.2 [<prefix>-n2] enl2 10.71.2.1 -- eth0 10.71.2.2 <prefix>-p2
 *
 * Each node: `ip rule iif enl<i> lookup 100` and `iif enu<i> lookup 100`,
 * table 100 = default dev <tun> (esp-node.ts adds it). Plain mode: the main
 * table routes the other pod CIDR via the other node's underlay address, so
 * a packet passes the sender's forwarder, the underlay, then the receiver's
 * forwarder. Encrypted mode: the sender's forwarder seals packets for the
 * other pod CIDR into ESP-in-UDP to the other node (host/forwarder/esp-path.ts)
 * and the receiver's forwarder opens them; the TUN MTU and the pods' routes
 * are lowered by the ESP overhead (host/encrypt/mtu.ts).
 */
import { mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { NetnsLab } from "../sys/netns/lab.js";
import type { NetnsProcess } from "../sys/netns/process.js";
import { packageRoot } from "../package-root.js";
import { encryptedMtu } from "../encrypt/mtu.js";
import type { EspNodeConfig } from "./esp-node.js";

export const UNDERLAY_MTU = 1500;
/** wireguard-go's default: 1500 - 80 (IPv6 outer header, UDP, WireGuard's header and tag). */
export const WIREGUARD_MTU = 1420;
const TABLE = 100;

export interface PairNode {
  index: 1 | 2;
  ns: string;
  pod: string;
  podIp: string;
  podCidr: string;
  underlayIp: string;
  underlayIf: string;
  dir: string;
  keyFile: string;
  peersFile: string;
  process?: NetnsProcess;
}

export class EncryptedPair {
  readonly lab: NetnsLab;
  readonly nodes: [PairNode, PairNode];
  readonly mtu: number;

  /**
   * `wireguard`: no forwarders and no rules into table 100; the caller puts
   * a WireGuard device in each node and routes the other pod CIDR into it
   * (the bench's reference), and the pods' routes carry WireGuard's MTU.
   */
  constructor(prefix: string, readonly opts: { encrypt: boolean; wireguard?: boolean; graceSeconds?: number; icvBits?: number }) {
    this.lab = new NetnsLab(prefix);
    const dir = join(tmpdir(), `${prefix}-state`);
    const node = (i: 1 | 2): PairNode => ({
      index: i, ns: `${prefix}-n${i}`, pod: `${prefix}-p${i}`, podIp: `10.71.${i}.2`, podCidr: `10.71.${i}.0/24`,
      underlayIp: `192.168.71.${i}`, underlayIf: `enu${i}`, dir: join(dir, `n${i}`), keyFile: join(dir, `n${i}`, "keys"), peersFile: join(dir, `n${i}`, "peers.json"),
    });
    this.nodes = [node(1), node(2)];
    this.mtu = opts.wireguard ? WIREGUARD_MTU : opts.encrypt ? encryptedMtu(UNDERLAY_MTU, opts.icvBits ?? 128) : UNDERLAY_MTU;
  }

  get stateRoot(): string {
    return join(this.nodes[0].dir, "..");
  }

  other(n: PairNode): PairNode {
    return n.index === 1 ? this.nodes[1] : this.nodes[0];
  }

  create(): void {
    const { lab } = this;
    for (const n of this.nodes) {
      lab.addNamespace(`n${n.index}`);
      lab.addNamespace(`p${n.index}`);
      rmSync(n.dir, { recursive: true, force: true });
      mkdirSync(n.dir, { recursive: true, mode: 0o700 });
    }
    lab.defer("remove state dirs", () => rmSync(this.stateRoot, { recursive: true, force: true }));
    const [n1, n2] = this.nodes;
    lab.addVeth({ ns: n1.ns, name: n1.underlayIf }, { ns: n2.ns, name: n2.underlayIf });
    for (const n of this.nodes) {
      const lxc = `enl${n.index}`;
      lab.addVeth({ ns: n.ns, name: lxc }, { ns: n.pod, name: "eth0" });
      lab.addAddress(n.ns, n.underlayIf, `${n.underlayIp}/24`);
      lab.addAddress(n.ns, lxc, `10.71.${n.index}.1/24`);
      lab.addAddress(n.pod, "eth0", `${n.podIp}/24`);
      for (const [ns, dev] of [[n.ns, n.underlayIf], [n.ns, lxc], [n.pod, "eth0"]] as const) lab.linkUp(ns, dev);
      // The pod's route to the rest of the cluster carries the corrected MTU.
      lab.addRoute(n.pod, 4, ["10.71.0.0/16", "via", `10.71.${n.index}.1`, "mtu", String(this.mtu)]);
      lab.sysctl(n.ns, "net.ipv4.ip_forward", 1);
      lab.sysctl(n.ns, "net.ipv4.conf.all.rp_filter", 0);
      lab.sysctl(n.ns, "net.ipv4.conf.default.rp_filter", 0);
      if (this.opts.wireguard) continue;
      lab.addRule(n.ns, 4, ["iif", lxc, "lookup", String(TABLE), "pref", "100"]);
      lab.addRule(n.ns, 4, ["iif", n.underlayIf, "lookup", String(TABLE), "pref", "101"]);
      if (!this.opts.encrypt) lab.addRoute(n.ns, 4, [this.other(n).podCidr, "via", this.other(n).underlayIp]);
    }
  }

  async waitUp(): Promise<void> {
    for (const n of this.nodes) {
      await this.lab.waitUp(n.ns, n.underlayIf);
      await this.lab.waitUp(n.ns, `enl${n.index}`);
      await this.lab.waitUp(n.pod, "eth0");
    }
  }

  writeKey(n: PairNode, line: string): void {
    // Written beside and renamed: the watcher never reads half a file.
    writeFileSync(`${n.keyFile}.new`, line + "\n", { mode: 0o600 });
    renameSync(`${n.keyFile}.new`, n.keyFile);
  }

  /** Node n's view of its peer: what the peer's node record would say, with the key index it advertises. */
  writePeers(n: PairNode, peerKeyIndex: number): void {
    const p = this.other(n);
    writeFileSync(`${n.peersFile}.new`, JSON.stringify({ peers: [{ name: `n${p.index}`, address: p.underlayIp, cidrs: [p.podCidr], keyIndex: peerKeyIndex }] }));
    renameSync(`${n.peersFile}.new`, n.peersFile);
  }

  /** Starts node n's forwarder (esp-node.ts from dist/) and waits for it to be ready. */
  async start(n: PairNode): Promise<NetnsProcess> {
    const cfg: EspNodeConfig = {
      tun: `en-tun${n.index}`, mtu: this.mtu, table: TABLE,
      ...(this.opts.encrypt
        ? { encrypt: { keyFile: n.keyFile, peersFile: n.peersFile, listen: n.underlayIp, stateDir: n.dir, graceSeconds: this.opts.graceSeconds } }
        : {}),
    };
    const proc = this.lab.spawn(n.ns, [process.execPath, join(packageRoot(), "dist/host/demo/esp-node.js"), JSON.stringify(cfg)], { label: `forwarder n${n.index}` });
    n.process = proc;
    await proc.ready(15_000);
    return proc;
  }

  /**
   * Starts node n's forwarder as `membrane agent --datapath tun --encrypt-keys ...`
   * (dist/), its routing through the agent's own --route-table/--route-rule,
   * and waits for its start line. `extraArgs` go to the agent as they are
   * (e.g. --metrics).
   */
  async startAgent(n: PairNode, extraArgs: string[] = []): Promise<NetnsProcess> {
    const args = [
      join(packageRoot(), "dist/host/cli/main.js"), "agent", "--datapath", "tun", "--device", `en-tun${n.index}`, "--state-dir", n.dir,
      "--route", "0.0.0.0/0", "--route-table", String(TABLE),
      "--encrypt-keys", n.keyFile, "--encrypt-listen", n.underlayIp, "--encrypt-peers", n.peersFile,
      ...(this.opts.graceSeconds ? ["--encrypt-grace", String(this.opts.graceSeconds)] : []),
      ...extraArgs,
    ];
    const proc = this.lab.spawn(n.ns, [process.execPath, ...args], { label: `agent n${n.index}` });
    n.process = proc;
    await proc.waitLine("the agent's start line", (l) => typeof l === "string" && l.startsWith("membrane agent: forwarding on"), 20_000);
    return proc;
  }

  /**
   * Creates the namespaces, gives both nodes `keyLine` and a peer advertising
   * `peerKeyIndex`, then runs `startNodes`; if any of it fails, everything
   * made so far is torn down and the error names what cleanup could not undo.
   */
  async bringUp(keyLine: string, peerKeyIndex: number, startNodes: () => Promise<unknown>): Promise<void> {
    try {
      this.create();
      await this.waitUp();
      for (const n of this.nodes) {
        this.writeKey(n, keyLine);
        this.writePeers(n, peerKeyIndex);
      }
      await startNodes();
    } catch (err) {
      const problems = await this.teardown();
      if (problems.length) (err as Error).message += `; cleanup: ${problems.join("; ")}`;
      throw err;
    }
  }

  /** SIGTERM node n's forwarder and waits for it to exit. */
  async stop(n: PairNode): Promise<void> {
    const p = n.process;
    if (!p?.running || p.child.pid === undefined) return;
    process.kill(p.child.pid, "SIGTERM");
    await p.exited;
    n.process = undefined;
  }

  teardown(): Promise<string[]> {
    return this.lab.teardown();
  }
}
