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
 *
 * Endpoint ids stay across restarts: the core is given the ids the pinned
 * endpoint records hold (by address), and once its first full view is
 * applied the datapath is reconciled with it, so endpoints that went away
 * while no agent ran lose their records, policy entries and programs. A
 * pod's MAC is its veth peer's (host/sys/veth-peer.ts), its ifindex the
 * host side's. Monitor, status file and --metrics are served as in
 * state-file mode (kernel-observe.ts), next to the cluster API on agent.sock.
 * --datapath-options sets table sizes, LB and NAT (masquerading in bpf_host,
 * so NAT needs --external-device).
 */
import { exitNow } from "../sys/exit-now.js";
import { InvalidInputError, NotSupportedError } from "../errors.js";
import { agentSocketPath } from "../api/socket-path.js";
import type { Output } from "../format/output.js";
import { KernelAgentDatapath } from "../kernel/agent-datapath.js";
import type { EndpointDevice } from "../kernel/templates/endpoint-programs.js";
import type { KvStore } from "../kvstore/store.js";
import type { NodeAddress } from "../kvstore/records/node.js";
import type { Metrics } from "../metrics/registry.js";
import type { ResolvedOptions } from "../config.js";
import type { PinnedGcRun } from "../kernel/pinned-gc.js";
import { vethPeer } from "../sys/veth-peer.js";
import { KernelAgentObserver } from "./kernel-observe.js";
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
  /** --datapath-options: table sizes, LB, NAT (default: the defaults, NAT off). */
  options?: ResolvedOptions;
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
  if (opts.options?.nat && !opts.externalDevice) throw new InvalidInputError("agent --datapath bpf: --datapath-options turns NAT on, which needs --external-device (masquerading happens in bpf_host there)");
  prepareStateDir(opts.stateDir);
  const lock = await lockStateDir(opts.stateDir, () => `a kernel datapath agent on pins ${opts.pinDir}, node ${opts.node}`);
  const say = (line: string) => io.out(`membrane agent: ${line}`);
  const log = (line: string) => io.err(`${stamp()} membrane agent: ${line}`);

  // Read live by the datapath at each change: refilled from the core's pods before the change is applied.
  const devices = new Map<number, EndpointDevice>();
  const unplaced = new Set<string>();
  let core: ClusterAgentCore | undefined;
  const deviceProblems = new Set<string>();
  /** The pod's host-side ifindex and its veth peer's MAC; a problem said once per pod and device. */
  const podDevice = (pod: string): { ifindex: number; mac: string } | undefined => {
    const ifname = opts.podDevices.get(pod);
    if (!ifname) return undefined;
    try {
      const { host, peer } = vethPeer(ifname);
      return { ifindex: host.ifindex, mac: peer.mac ?? "00:00:00:00:00:00" };
    } catch (err) {
      const line = `pod ${pod}: ${ifname}: ${(err as Error).message}; its endpoint gets ifindex 0 and a zero MAC`;
      if (!deviceProblems.has(line)) log(line);
      deviceProblems.add(line);
      return undefined;
    }
  };
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

  const observer = new KernelAgentObserver({
    stateDir: opts.stateDir, pinDir: opts.pinDir, externalDevice: opts.externalDevice, metrics: opts.metrics, warn: (line) => log(`warning: ${line}`),
    endpoints: () => core?.localEndpoints() ?? [],
    tables: () => {
      const c = core?.status().counts;
      return { services: c?.services ?? 0, identities: c?.identities ?? 0, policies: c?.policies ?? 0 };
    },
  });
  const reportGc = gcReporter(say);
  const onGc = (run: PinnedGcRun) => {
    observer.gcRan(run);
    reportGc(run);
  };

  const signals = new ShutdownSignals(io, { lost: () => "nothing (the programs and pinned maps stay)", force: (_s, code) => exitNow(code) }, opts.signals);
  let kernel: KernelAgentDatapath | undefined;
  let joined: Promise<void> | undefined;
  try {
    kernel = await KernelAgentDatapath.start({
      options: opts.options, pinDir: opts.pinDir, templatesDir: opts.templatesDir, devices,
      externalDevice: opts.externalDevice ? { ifname: opts.externalDevice } : undefined,
      onGc,
    });
    const running = kernel;
    const previous = kernel.previousEndpointIds();
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
      previousEndpointIds: previous, endpointDevice: podDevice,
      metrics: opts.metrics, log,
    });
    const joining = core;
    await observer.attach(kernel, clusterApiRoutes(core));
    say(`kernel datapath running: maps pinned in ${opts.pinDir}${opts.externalDevice ? `, bpf_host on ${opts.externalDevice}` : ""}${opts.options?.nat ? " (NAT on)" : ""}; ${previous.size} endpoint address(es) from a previous agent; joining cluster through ${opts.store.backend} ${opts.store.location} as node ${opts.node}; API on ${agentSocketPath(opts.stateDir)}`);
    joined = core.start().then(
      async () => {
        // The core's first full view is applied: what the pinned maps and programs hold beyond it is stale.
        const r = await joining.exclusive(() => running.reconcile(joining.engine.snapshot(), joining.ipcacheTable())).catch((err: unknown) => {
          log(`reconciling the datapath with the cluster: ${(err as Error).message}`);
          return { removed: [], detached: 0 };
        });
        if (r.removed.length) say(`reconciled with the cluster: endpoint(s) ${r.removed.join(",")} gone, their records and policy entries deleted, ${r.detached} left program(s) detached`);
        const ids = joining.localEndpoints().map((e) => `${e.pod}=${e.id}`).join(" ");
        say(`node ${opts.node} joined: ${JSON.stringify(joining.status().counts)}; ${running.endpoints.endpoints.size} endpoint program(s), ${running.cache.stats.compiles} template(s) compiled; endpoint ids ${ids || "(none)"}`);
      },
      (err: unknown) => log(`bootstrap stopped: ${(err as Error).message}`),
    );
    await untilStopRequested(signals, opts.seconds);
  } finally {
    await core?.stop();
    await joined;
    await observer.close();
    await opts.store.close();
    if (kernel) {
      stopKernelDatapath(kernel, opts.detachOnStop === true, opts.pinDir, say);
    }
    signals.dispose();
    lock.release();
  }
}
