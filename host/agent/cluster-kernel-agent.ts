/**
 * `membrane agent --datapath bpf --kvstore <spec> --node <name>`: the kernel
 * datapath (host/kernel/agent-datapath.ts) driven by the cluster loop
 * (host/cluster/agent-core.ts) through KernelSink, as the TUN forwarder is
 * driven through ForwarderSink in cluster-agent.ts.
 *
 * Endpoint ids are numbered by the core as pods arrive, so a pod's veth is
 * named by the pod, not the id: `--endpoint-device NAMESPACE/POD=IFNAME`.
 * Before each policy change reaches the kernel the sink re-reads the core's
 * local endpoints and places each named pod's id on its veth; a pod without
 * one gets its map records only (said once). bpf_host goes on
 * --external-device. Stopping leaves the programs attached and the maps
 * pinned (--detach-on-stop removes the programs), and the next agent
 * replaces each program in place, as in state-file mode (kernel-agent.ts).
 */
import { NotSupportedError } from "../errors.js";
import type { Output } from "../format/output.js";
import { KernelAgentDatapath } from "../kernel/agent-datapath.js";
import type { EndpointDevice } from "../kernel/templates/endpoint-programs.js";
import type { KvStore } from "../kvstore/store.js";
import type { NodeAddress } from "../kvstore/records/node.js";
import type { Metrics } from "../metrics/registry.js";
import { startApiServer } from "../api/server.js";
import { agentSocketPath } from "../api/socket-path.js";
import { ClusterAgentCore } from "../cluster/agent-core.js";
import { clusterApiRoutes } from "../cluster/api-routes.js";
import { IpRouteSink } from "../cluster/forwarder-sink.js";
import { KernelSink } from "../cluster/kernel-sink.js";
import { describeUpsert, gcReporter, kernelFeaturesLine, stopKernelDatapath } from "./kernel-agent-lines.js";
import { lockStateDir, prepareStateDir } from "./state-dir.js";
import { ShutdownSignals, untilStopRequested, type SignalSource } from "./signals.js";

export interface ClusterKernelAgentRunOptions {
  /** Opened by the caller; closed when the agent stops. */
  store: KvStore;
  node: string;
  addresses: NodeAddress[];
  ipv4AllocCidr?: string;
  ipv6AllocCidr?: string;
  encryptionKey?: number;
  routeDevice?: string;
  stateDir: string;
  pinDir: string;
  templatesDir?: string;
  /** Host-side veths by pod ("namespace/name"). */
  podDevices: ReadonlyMap<string, string>;
  externalDevice?: string;
  detachOnStop?: boolean;
  seconds?: number;
  metrics?: Metrics;
  signals?: SignalSource;
}

const stamp = () => new Date().toISOString();

export async function runClusterKernelAgent(opts: ClusterKernelAgentRunOptions, io: Output): Promise<void> {
  if (process.getuid?.() !== 0) throw new NotSupportedError("agent --datapath bpf: loading and attaching BPF programs needs root (CAP_BPF, CAP_NET_ADMIN)");
  prepareStateDir(opts.stateDir);
  const lock = await lockStateDir(opts.stateDir, () => `a kernel datapath agent on pins ${opts.pinDir}, node ${opts.node}`);
  const say = (line: string) => io.out(`membrane agent: ${line}`);
  const log = (line: string) => io.err(`${stamp()} membrane agent: ${line}`);

  // Read live by the datapath at each change: refilled from the core's pods before the change is applied.
  const devices = new Map<number, EndpointDevice>();
  const unplaced = new Set<string>();
  let core: ClusterAgentCore | undefined;
  const placePods = () => {
    devices.clear();
    for (const ep of core?.localEndpoints() ?? []) {
      const ifname = opts.podDevices.get(ep.pod);
      if (ifname) devices.set(ep.id, { ifname });
      else if (!unplaced.has(ep.pod)) {
        unplaced.add(ep.pod);
        log(`pod ${ep.pod} (endpoint ${ep.id}) has no device here (give --endpoint-device ${ep.pod}=IFNAME): its map records are written, no program attached`);
      }
    }
  };

  const signals = new ShutdownSignals(io, { lost: () => "nothing (the programs and pinned maps stay)", force: (_s, code) => process.exit(code) }, opts.signals);
  let kernel: KernelAgentDatapath | undefined;
  let api: Awaited<ReturnType<typeof startApiServer>> | undefined;
  let joined: Promise<void> | undefined;
  try {
    kernel = await KernelAgentDatapath.start({
      pinDir: opts.pinDir, templatesDir: opts.templatesDir, devices,
      externalDevice: opts.externalDevice ? { ifname: opts.externalDevice } : undefined,
      onGc: gcReporter(say),
    });
    const running = kernel;
    for (const w of kernel.warnings) log(`warning: ${w}`);
    say(kernelFeaturesLine());
    core = new ClusterAgentCore({
      store: opts.store, node: opts.node, addresses: opts.addresses,
      ipv4AllocCidr: opts.ipv4AllocCidr, ipv6AllocCidr: opts.ipv6AllocCidr, encryptionKey: opts.encryptionKey,
      sink: new KernelSink(kernel, new IpRouteSink(opts.routeDevice), {
        beforePolicy: placePods,
        afterPolicy: (change, programs) => {
          for (const [id, r] of programs) say(`${describeUpsert(id, devices.get(id), r)}; ${running.cache.stats.compiles} template(s) compiled in all`);
          for (const id of change.endpoints.remove) say(`endpoint ${id} removed: programs detached, its map records deleted`);
        },
      }),
      metrics: opts.metrics, log,
    });
    api = await startApiServer(agentSocketPath(opts.stateDir), clusterApiRoutes(core), opts.metrics);
    say(`kernel datapath running: maps pinned in ${opts.pinDir}${opts.externalDevice ? `, bpf_host on ${opts.externalDevice}` : ""}; joining cluster through ${opts.store.backend} ${opts.store.location} as node ${opts.node}; API on ${api.socketPath}`);
    joined = core.start().then(
      () => say(`node ${opts.node} joined: ${JSON.stringify(core!.status().counts)}; ${running.endpoints.endpoints.size} endpoint program(s), ${running.cache.stats.compiles} template(s) compiled`),
      (err: unknown) => log(`bootstrap stopped: ${(err as Error).message}`),
    );
    await untilStopRequested(signals, opts.seconds);
  } finally {
    await core?.stop();
    await joined;
    await api?.close();
    await opts.store.close();
    if (kernel) {
      stopKernelDatapath(kernel, opts.detachOnStop === true, opts.pinDir, say);
    }
    signals.dispose();
    lock.release();
  }
}
