/**
 * `membrane agent --datapath tun --kvstore <spec> --node <name>`: the TUN
 * forwarder (as `membrane agent` starts it) driven by the cluster instead of
 * a state file. The forwarder starts empty; the cluster loop
 * (host/cluster/agent-core.ts) registers the node, follows the kvstore and
 * applies services, endpoints, ipcache and policy through the forwarder's
 * command channel while it forwards, and routes toward the other nodes in
 * the kernel. The agent API answers on <state-dir>/agent.sock (0600).
 *
 * The bootstrap is retried in place (a kvstore that is not up yet delays
 * the node's join, it does not kill the agent); SIGINT/SIGTERM stop it and
 * save conntrack, as the state-file agent does.
 */
import { join } from "node:path";
import { rmSync } from "node:fs";
import { ForwarderHandle } from "../forwarder/controller.js";
import { resolveOptions, type ResolvedOptions } from "../config.js";
import { NotSupportedError } from "../errors.js";
import { ip } from "../sys/netns/iproute2.js";
import { writeStatus, statusPath, type AgentStatus } from "./status-file.js";
import { lockStateDir, prepareStateDir } from "./state-dir.js";
import type { Output } from "../format/output.js";
import type { KvStore } from "../kvstore/store.js";
import type { NodeAddress } from "../kvstore/records/node.js";
import type { Metrics } from "../metrics/registry.js";
import { startApiServer } from "../api/server.js";
import { agentSocketPath } from "../api/socket-path.js";
import { ClusterAgentCore } from "../cluster/agent-core.js";
import { clusterApiRoutes } from "../cluster/api-routes.js";
import { ForwarderSink, IpRouteSink } from "../cluster/forwarder-sink.js";
import { AgentMetrics } from "./agent-metrics.js";
import { AgentMonitor, endpointLookup } from "./agent-monitor.js";
import { offloadsText } from "./offloads-text.js";
import { monitorApiRoutes } from "../monitor/api-route.js";
import { captureApiRoutes } from "../capture/api-route.js";
import type { EspPathOptions } from "../forwarder/esp-path.js";
import { clusterPeersFile, keyIndexOf, prepareClusterEncryption, startEncryptionSync } from "./cluster-encryption.js";

export interface ClusterAgentRunOptions {
  /** Opened by the caller (the CLI validates the --kvstore options first). Closed when the agent stops. */
  store: KvStore;
  node: string;
  addresses: NodeAddress[];
  ipv4AllocCidr?: string;
  ipv6AllocCidr?: string;
  encryptionKey?: number;
  options?: ResolvedOptions;
  device?: string;
  mtu?: number;
  offloads?: boolean;
  /** Why offloads are on or off, for the start line (host/cli/agent.ts offloadsFromFlags). */
  offloadsWhy?: string;
  /** Prefixes routed into the TUN device (the node's pod CIDRs are added). */
  routes: string[];
  /** The link toward the other nodes (routes to their pod CIDRs use it); default: what the kernel picks for the next hop. */
  routeDevice?: string;
  stateDir: string;
  seconds?: number;
  /** Seconds between conntrack snapshots while forwarding (default 10), as for the state-file agent. */
  snapshotInterval?: number;
  metrics?: Metrics;
  /** Userspace ESP to the other nodes; their keys come from the node records (encryption-sync.ts). */
  encrypt?: EspPathOptions;
}

const stamp = () => new Date().toISOString();

export async function runClusterAgent(opts: ClusterAgentRunOptions, io: Output): Promise<void> {
  if (process.getuid?.() !== 0) throw new NotSupportedError("agent: creating a TUN device and routes needs root (CAP_NET_ADMIN)");
  const options = opts.options ?? resolveOptions({});
  const started = new Date().toISOString();
  // As the state-file agent: the dir made 0700 if missing, one agent per dir (the lock dies with its holder).
  prepareStateDir(opts.stateDir);
  const lock = await lockStateDir(opts.stateDir, () => undefined);
  let latest: Omit<AgentStatus, "stats" | "counters" | "flows" | "entries" | "updatedAt"> | undefined;
  const observed = opts.metrics && new AgentMetrics(opts.metrics);
  let core: ClusterAgentCore | undefined;
  const monitor = new AgentMonitor(endpointLookup(() => core?.localEndpoints() ?? []));
  const fwd = await ForwarderHandle.start({
    options,
    device: { name: opts.device, mtu: opts.mtu, offloads: opts.offloads },
    encrypt: prepareClusterEncryption(opts.stateDir, opts.encrypt),
    snapshotPath: join(opts.stateDir, "conntrack.snap"),
    snapshotEveryMs: Math.round((opts.snapshotInterval ?? 10) * 1000),
    onMonitor: monitor.deliver,
    onCapture: monitor.deliverCapture,
    onReport: (r) => {
      observed?.report(r);
      if (!latest) return;
      writeStatus(opts.stateDir, { ...latest, updatedAt: new Date().toISOString(), entries: r.entries, stats: r.stats, counters: r.counters, flows: r.flows, services: r.services, nat: r.nat, natMappings: r.natMappings });
    },
  });
  const tunRoutes = [...new Set([...opts.routes, ...[opts.ipv4AllocCidr, opts.ipv6AllocCidr].filter((c): c is string => c !== undefined)])];
  monitor.attach(fwd);
  let api: Awaited<ReturnType<typeof startApiServer>> | undefined;
  let sync: ReturnType<typeof startEncryptionSync> | undefined;
  const stopAll = async () => {
    sync?.stop();
    await core?.stop();
    await api?.close();
    await opts.store.close();
  };
  try {
    ip("link", "set", "dev", fwd.ready.device, "up");
    for (const r of tunRoutes) ip("route", "replace", r, "dev", fwd.ready.device);
    core = new ClusterAgentCore({
      store: opts.store,
      node: opts.node,
      addresses: opts.addresses,
      ipv4AllocCidr: opts.ipv4AllocCidr,
      ipv6AllocCidr: opts.ipv6AllocCidr,
      encryptionKey: opts.encrypt ? keyIndexOf(opts.encrypt) : opts.encryptionKey,
      encryptInto: opts.encrypt ? fwd.ready.device : undefined,
      sink: new ForwarderSink(fwd, new IpRouteSink(opts.routeDevice), opts.encrypt ? { peersSeedFile: clusterPeersFile(opts.stateDir) } : {}),
      metrics: opts.metrics,
      log: (line) => io.err(`${stamp()} membrane agent: ${line}`),
    });
    sync = opts.encrypt ? startEncryptionSync(core, opts.stateDir, keyIndexOf(opts.encrypt), (line) => io.err(`${stamp()} membrane agent: ${line}`)) : undefined;
    if (observed) observed.tables = () => core!.status().counts;
    api = await startApiServer(agentSocketPath(opts.stateDir), { ...clusterApiRoutes(core), ...monitorApiRoutes(monitor.hub), ...captureApiRoutes(monitor) }, opts.metrics);
    latest = { pid: process.pid, datapath: "tun", device: fwd.ready.device, mtu: fwd.ready.mtu, routes: tunRoutes, startedAt: started, restoredEntries: Object.values(fwd.ready.restored).reduce((s, n) => s + n, 0) };
    io.out(`membrane agent: forwarding on ${fwd.ready.device} (mtu ${fwd.ready.mtu}, ${offloadsText(opts.offloads, opts.offloadsWhy)}); joining cluster through ${opts.store.backend} ${opts.store.location} as node ${opts.node}; API on ${api.socketPath}`);
  } catch (err) {
    await stopAll();
    await fwd.stop();
    lock.release();
    throw err;
  }

  const signalled = new Promise<void>((resolve) => {
    const keepAlive = setInterval(() => {}, 1 << 30);
    const done = () => { clearInterval(keepAlive); resolve(); };
    process.once("SIGINT", done);
    process.once("SIGTERM", done);
    if (opts.seconds !== undefined) setTimeout(done, opts.seconds * 1000);
  });
  // Bootstrap runs while forwarding: a kvstore that is not up yet only delays the join (each step retried in place).
  const joined = core.start().then(
    () => io.out(`membrane agent: node ${opts.node} joined: ${JSON.stringify(core!.status().counts)}`),
    (err: unknown) => io.err(`${stamp()} membrane agent: bootstrap stopped: ${(err as Error).message}`),
  );
  await signalled;
  await stopAll();
  await joined;
  const stopped = await fwd.stop();
  rmSync(statusPath(opts.stateDir), { force: true });
  lock.release();
  io.out(`membrane agent: stopped after ${stopped.stats.packetsIn} packets in, ${stopped.stats.packetsOut} out; ${stopped.snapshotEntries} conntrack entries saved`);
}
