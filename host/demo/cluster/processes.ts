/**
 * The cluster demo's membrane processes: one `membrane agent --kvstore
 * --node` per node (inside the node's namespace, so its TUN and routes are
 * the node's), one `membrane operator`, and `membrane apply -f`. Always the
 * CLI as built (dist/), like the forwarder worker: what runs is what ships.
 */
import { join } from "node:path";
import { existsSync, renameSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { clusterDatapathOptions } from "./masquerade.js";
import { packageRoot } from "../../package-root.js";
import { callAgent } from "../../api/client.js";
import { agentSocketPath } from "../../api/socket-path.js";
import type { NetnsProcess } from "../../sys/netns/process.js";
import { TUN_NAME, type ClusterNode, type ClusterTopology } from "./topology.js";

export function cliPath(): string {
  return join(packageRoot(), "dist/host/cli/main.js");
}

/** Why the CLI cannot be started, or undefined. */
export function cliMissing(): string | undefined {
  return existsSync(cliPath()) ? undefined : `${cliPath()} is missing: run npm run build`;
}

export class ClusterProcesses {
  readonly agents = new Map<string, NetnsProcess>();
  operator: NetnsProcess | undefined;

  /**
   * `kvstore`: the --kvstore spec every process gets; `dir`: state dirs live
   * under it; `metricsPort`: each agent serves --metrics on 127.0.0.1:<port>
   * of its namespace (metrics-bridge.ts brings it to the host).
   */
  constructor(readonly topo: ClusterTopology, readonly kvstore: string, readonly dir: string, readonly metricsPort?: number, readonly encrypt = false) {}

  /** With `encrypt`: the node's IPsec key file (Cilium's format), watched by its agent. */
  keyFile(node: ClusterNode): string {
    return join(this.dir, `${node.name}-ipsec-keys`);
  }

  /**
   * Writes key `spi` (a fresh random AES-128-GCM key and salt) into every
   * node's key file, one node after the other as an operator rolling a
   * secret out would: each agent installs it, advertises the new index in its
   * node record, and sends with it once its peer advertises it too.
   */
  writeKeys(spi: number): void {
    const line = `${spi} rfc4106(gcm(aes)) 0x${randomBytes(20).toString("hex")} 128\n`;
    for (const node of [this.topo.nodes.n1, this.topo.nodes.n2]) {
      const file = this.keyFile(node);
      writeFileSync(`${file}.new`, line, { mode: 0o600 });
      renameSync(`${file}.new`, file);
    }
  }

  stateDir(node: ClusterNode): string {
    return join(this.dir, node.name);
  }

  /** Starts (or restarts) the node's agent; resolves once it forwards and its TUN carries table 100. */
  async startAgent(node: ClusterNode): Promise<NetnsProcess> {
    const options = join(this.dir, `${node.name}-datapath.json`);
    writeFileSync(options, JSON.stringify(clusterDatapathOptions(this.topo, node)), { mode: 0o600 });
    const argv = [
      process.execPath, cliPath(), "agent", "--datapath", "tun", "--device", TUN_NAME,
      "--kvstore", this.kvstore, "--node", node.name, "--node-ip", node.ip, "--node-ip", node.ip6,
      "--pod-cidr", node.podCidr, "--pod-cidr", node.podCidr6,
      "--route-device", node.link, "--state-dir", this.stateDir(node), "--snapshot-interval", "1",
      "--datapath-options", options,
      ...(this.metricsPort === undefined ? [] : ["--metrics", `127.0.0.1:${this.metricsPort}`]),
      ...(this.encrypt ? ["--encrypt-keys", this.keyFile(node), "--encrypt-listen", node.ip] : []),
    ];
    const p = this.topo.lab.spawn(node.ns, argv, { label: `${node.name}: membrane agent` });
    this.agents.set(node.name, p);
    await p.waitLine("forwarding", (l) => typeof l === "string" && l.includes("forwarding on"), 20_000);
    this.topo.attachTun(node.name);
    return p;
  }

  /** SIGKILL, then wait for the exit (the kernel drops its lock and its TUN with it). */
  async killAgent(node: ClusterNode): Promise<void> {
    const p = this.agents.get(node.name);
    if (!p) return;
    p.kill();
    await p.exited;
  }

  startOperator(): NetnsProcess {
    this.operator = this.topo.lab.spawn(this.topo.control, [process.execPath, cliPath(), "operator", "--kvstore", this.kvstore, "--lease-ttl", "5"], { label: "membrane operator" });
    return this.operator;
  }

  /** `membrane apply -f <path>`; throws with its stderr when it fails. */
  async apply(path: string): Promise<void> {
    const p = this.topo.lab.spawn(this.topo.control, [process.execPath, cliPath(), "apply", "-f", path, "--kvstore", this.kvstore], { label: `membrane apply -f ${path}` });
    const code = await p.exited;
    if (code !== 0) throw new Error(`membrane apply -f ${path}: exit ${code}: ${p.stderr.trim()}`);
  }

  /** GET on the node's agent API (its 0600 socket under the state dir). */
  async api<T>(node: ClusterNode, path: string): Promise<T> {
    const r = await callAgent<T>(agentSocketPath(this.stateDir(node)), "GET", path, undefined, 3_000);
    return r.body;
  }

  /** SIGTERM to every membrane process still running (they save and remove what they set up), bounded. */
  async stop(ms = 8_000): Promise<void> {
    const all = [...this.agents.values(), ...(this.operator ? [this.operator] : [])].filter((p) => p.running);
    for (const p of all) {
      try {
        process.kill(p.child.pid!, "SIGTERM");
      } catch {
        // gone meanwhile
      }
    }
    const deadline = new Promise((r) => setTimeout(r, ms).unref());
    await Promise.race([Promise.all(all.map((p) => p.exited)), deadline]);
    for (const p of all) p.kill();
  }
}
