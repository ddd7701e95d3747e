/**
 * `membrane agent --datapath tun [options]`: the agent's options, parsed and
 * checked here, then handed to host/agent. The options are one list
 * (AGENT_OPTIONS): a new one is a line there and a field in agentOptions().
 */
import type { TunIoChoice } from "../tun/tun-io-choice.js";
import { availableParallelism } from "node:os";
import { Command, Option } from "commander";
import { loadAgentConfig, parseSnapshotInterval, runAgent, type AgentOptions } from "../agent/agent.js";
import { parseRouteRule, parseRouteTable } from "../agent/routing.js";
import { DEFAULT_STATE_DIR } from "../agent/status-file.js";
import { InvalidInputError } from "../errors.js";
import { example, integerArg, outputOf } from "./command.js";
import { addClusterAgentOptions, isClusterMode, runClusterAgentFromFlags } from "./cluster-agent.js";
import { addKernelAgentOptions, runClusterKernelAgentFromFlags, runKernelAgentFromFlags } from "./kernel-agent-options.js";
import { addMetricsOption, withMetrics } from "./metrics-option.js";
import { ENCRYPT_AGENT_OPTIONS, encryptFromFlags } from "./agent-encrypt.js";

/** What commander hands the action: every option below, by its camelCase name. */
type AgentFlags = Record<string, string | string[] | boolean | undefined>;

const collect = (value: string, previous: string[] = []) => [...previous, value];

const AGENT_OPTIONS: Option[] = [
  new Option("--datapath <kind>", "the datapath to run: tun (the userspace forwarder) or bpf (templated kernel programs on the endpoints' veths)"),
  new Option("--config <file>", "state file (JSON), as for replay: datapath options, services, endpoints and policies"),
  new Option("--device <name>", "TUN device name").default("mbr0"),
  new Option("--mtu <n>", "device MTU, 576..65535 (default 1500)"),
  new Option("--offloads", "TSO/USO and checksum offload on the device (virtio-net header; the default, unless --encrypt-keys or --io-workers need them off)"),
  new Option("--no-offloads", "no offloads: one packet per read and write, every wire packet decided and counted on its own"),
  new Option("--queues <n>", "TUN queues, 1..256 (IFF_MULTI_QUEUE; one conntrack view over all; default: the number of CPUs)"),
  new Option("--tun-io <mode>", "how packets cross between the TUN and the forwarder: auto (adaptive when io_uring works, else batch, else koffi), adaptive (uring or batch, whichever costs less CPU per packet, measured under the traffic), uring (io_uring batches), batch (read/write looped in C), koffi (one FFI call per packet)").choices(["auto", "adaptive", "uring", "batch", "koffi"]).default("auto"),
  new Option("--no-native-io", "move TUN packets with one koffi FFI call per packet (the fallback), as --tun-io koffi"),
  new Option("--io-workers", "with several queues (no offloads), an I/O thread per queue does the read/write and one thread decides (default: only when there are more CPUs than queues)"),
  new Option("--no-io-workers", "with several queues, do every queue's read/write on the deciding thread"),
  new Option("--route <cidr>", "route this prefix into the device (repeatable)").argParser(collect),
  new Option("--route-table <n>", "put those routes in table n instead of main (policy routing)"),
  new Option("--route-rule <sel>", 'ip rule selector sending traffic to --route-table, e.g. "iif lxc-pod1 pref 100" (repeatable; added at start, removed at stop)').argParser(collect),
  new Option("--state-dir <dir>", "status file, lock and conntrack snapshot (created 0700)").default(DEFAULT_STATE_DIR),
  new Option("--snapshot-interval <s>", "seconds between conntrack snapshots while running (default 10)"),
  new Option("--discard-snapshot", "set the last run's conntrack snapshot aside and start without it").default(false),
  new Option("--seconds <n>", "stop after this many seconds (tests, demos); run until SIGINT/SIGTERM otherwise"),
];

function str(flags: AgentFlags, key: string): string | undefined {
  const v = flags[key];
  return typeof v === "string" ? v : undefined;
}

/**
 * Offloads are on unless something needs them off. With them the kernel hands
 * over TCP super-packets and takes coalesced TCP/UDP runs back in one write
 * (docs/forwarder.md, "Offload passthrough"): on this project's machine TCP
 * 17.9 against 1.4 Gbit/s, 64-byte UDP 1.06x-1.10x the C read/write loop against
 * 0.95x without. Off: the encrypted path seals packet by packet, and an I/O
 * thread's ring slot holds one MTU-sized packet. An explicit choice always wins,
 * and asking for both sides of a conflict is refused. `why` goes into the
 * agent's start line: "offloads off (--encrypt-keys seals packets one by one)".
 */
export function offloadsFromFlags(flags: AgentFlags): { on: boolean; why: string } {
  const encrypted = str(flags, "encryptKeys") !== undefined;
  if (flags.offloads === true) {
    if (flags.ioWorkers === true) throw new InvalidInputError("agent: --io-workers and --offloads: with offloads every queue is moved by the deciding thread (a ring slot would have to hold a 64 KiB super-packet); drop one of them");
    return { on: true, why: "--offloads" };
  }
  if (flags.offloads === false) return { on: false, why: "--no-offloads" };
  if (encrypted) return { on: false, why: "--encrypt-keys seals packets one by one" };
  if (flags.ioWorkers === true) return { on: false, why: "--io-workers: a ring slot holds one packet" };
  return { on: true, why: "default" };
}

/** The flags, checked, as runAgent's options (the state file loaded and validated before anything is set up). */
function agentOptions(flags: AgentFlags): AgentOptions {
  const datapath = str(flags, "datapath");
  if (datapath !== "tun") throw new InvalidInputError(`agent: --datapath must be "tun" or "bpf" (got ${datapath === undefined ? "nothing" : `"${datapath}"`})`);
  const mtu = integerArg("mtu", str(flags, "mtu"), 576, 65535);
  const queues = integerArg("queues", str(flags, "queues"), 1, 256) ?? Math.min(256, availableParallelism());
  const offloads = offloadsFromFlags(flags);
  const secondsText = str(flags, "seconds");
  const seconds = secondsText === undefined ? undefined : Number(secondsText);
  if (seconds !== undefined && !(seconds > 0)) throw new InvalidInputError(`--seconds: expected a positive number, got "${secondsText}"`);
  const routeTable = str(flags, "routeTable");
  const routeRules = ((flags.routeRule as string[] | undefined) ?? []).map(parseRouteRule);
  const interval = str(flags, "snapshotInterval");
  const snapshotInterval = interval === undefined ? undefined : parseSnapshotInterval(interval);
  const config = str(flags, "config");
  const state = config ? loadAgentConfig(config) : undefined;
  return {
    ...state, device: str(flags, "device"), mtu, offloads: offloads.on, offloadsWhy: offloads.why, queues, ioWorkers: flags.ioWorkers as boolean | undefined,
    tunIo: flags.nativeIo === false ? "koffi" : (str(flags, "tunIo") as TunIoChoice | undefined),
    routes: (flags.route as string[] | undefined) ?? [], stateDir: str(flags, "stateDir")!, seconds,
    routeTable: routeTable === undefined ? undefined : parseRouteTable(routeTable), routeRules,
    snapshotInterval, discardSnapshot: flags.discardSnapshot === true,
    ...encryptFromFlags(flags, str(flags, "stateDir")!, mtu, offloads.on),
  };
}

export function registerAgent(program: Command): void {
  const cmd = program.command("agent")
    .description("forward traffic routed into a TUN device through the Wasm datapath (root); reports to `membrane status`");
  for (const o of [...AGENT_OPTIONS, ...ENCRYPT_AGENT_OPTIONS]) cmd.addOption(o);
  example(cmd, "sudo membrane agent --datapath tun --config state.json --route 10.200.0.0/16", "sudo membrane agent --datapath tun --device mbr1 --mtu 9000 --queues 2 --no-offloads",
    "sudo membrane agent --datapath bpf --config state.json --endpoint-device 41=lxc41 --external-device eth0",
    "sudo membrane agent --datapath bpf --kvstore etcd --node n1 --node-ip 192.0.2.1 --endpoint-device default/web=lxcweb --external-device eth0");
  addClusterAgentOptions(cmd);
  addKernelAgentOptions(cmd);
  addMetricsOption(cmd);
  cmd.action(async (flags: AgentFlags, self: Command) => {
    const io = outputOf(self);
    if (flags.datapath === "bpf" && !isClusterMode(flags)) return withMetrics(flags, io, "agent", (metrics) => runKernelAgentFromFlags(flags, io, metrics));
    if (flags.datapath === "bpf") return withMetrics(flags, io, "agent", (metrics) => runClusterKernelAgentFromFlags(flags, metrics, io));
    if (isClusterMode(flags)) {
      const { device, mtu, offloads, offloadsWhy, routes, stateDir, seconds, snapshotInterval, encrypt } = agentOptions({ ...flags, config: undefined });
      return withMetrics(flags, io, "agent", (metrics) => runClusterAgentFromFlags(flags, { device, mtu, offloads, offloadsWhy, routes, stateDir, seconds, snapshotInterval, encrypt, metrics }, io));
    }
    const options = agentOptions(flags);
    await withMetrics(flags, io, "agent", (metrics) => runAgent({ ...options, metrics }, io));
  });
}
