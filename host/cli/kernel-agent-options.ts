/**
 * The flags of `membrane agent --datapath bpf`, checked here and handed to
 * host/agent/kernel-agent.ts. The TUN-only flags (--device, --route, ...)
 * are refused with this datapath rather than silently ignored.
 */
import { Option, type Command } from "commander";
import { runKernelAgent } from "../agent/kernel-agent.js";
import { pinDir as defaultPinDir } from "../bpf/bpffs.js";
import { InvalidInputError } from "../errors.js";
import type { Output } from "../format/output.js";
import { integerArg } from "./command.js";
import { runClusterKernelAgent } from "../agent/cluster-kernel-agent.js";
import type { Metrics } from "../metrics/registry.js";
import { clusterAgentFlags } from "./cluster-agent.js";
import { openKvstoreFromOptions, type KvstoreCliOptions } from "./kvstore-options.js";

type Flags = Record<string, string | string[] | boolean | undefined>;
const collect = (value: string, previous: string[] = []) => [...previous, value];
const str = (flags: Flags, key: string) => (typeof flags[key] === "string" ? (flags[key] as string) : undefined);

export const KERNEL_AGENT_OPTIONS: Option[] = [
  new Option("--pin-dir <dir>", "bpf: where the node's maps are pinned, kept across restarts (default /sys/fs/bpf/membrane, or $MEMBRANE_BPFFS)"),
  new Option("--templates-dir <dir>", "bpf: the template cache (default /var/lib/membrane/templates)"),
  new Option("--endpoint-device <id=ifname>", "bpf: an endpoint's host-side veth: ID=IFNAME from a state file (default: the ifindex in its record), NAMESPACE/POD=IFNAME in cluster mode (repeatable)").argParser(collect),
  new Option("--external-device <name>", "bpf: the node's external device; bpf_host (masquerading) is attached there"),
  new Option("--detach-on-stop", "bpf: detach every program at stop (default: leave them running for the next agent)").default(false),
];

/** Flags that only the TUN datapath has: given with --datapath bpf they are an error, not ignored. */
const TUN_ONLY = ["route", "routeTable", "routeRule", "mtu", "queues", "snapshotInterval", "encryptKeys", "encryptListen", "encryptPeers", "encryptGrace"] as const;

export function addKernelAgentOptions(cmd: Command): void {
  for (const o of KERNEL_AGENT_OPTIONS) cmd.addOption(o);
}

/** --endpoint-device 41=lxc0a1b: endpoint id -> interface name. */
export function parseEndpointDevices(values: readonly string[]): Map<number, string> {
  const out = new Map<number, string>();
  for (const v of values) {
    const m = /^([^=]+)=(.+)$/.exec(v);
    if (!m) throw new InvalidInputError(`--endpoint-device ${v}: expected ID=IFNAME`);
    const id = integerArg("endpoint-device", m[1], 1, 65535)!;
    if (m[2].length > 15 || /[\s/]/.test(m[2])) throw new InvalidInputError(`--endpoint-device ${v}: ${JSON.stringify(m[2])} is not an interface name (1-15 characters, no spaces or "/")`);
    if (out.has(id)) throw new InvalidInputError(`--endpoint-device ${v}: endpoint ${id} given twice`);
    out.set(id, m[2]);
  }
  return out;
}

function refuseTunOnly(flags: Flags): void {

  for (const key of TUN_ONLY) {
    const given = flags[key];
    if (given !== undefined && !(Array.isArray(given) && given.length === 0)) {
      throw new InvalidInputError(`agent --datapath bpf: --${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} is for the TUN datapath only`);
    }
  }
}

function checkedPinDir(flags: Flags): string {
  const pinDir = str(flags, "pinDir") ?? defaultPinDir();
  if (!pinDir.startsWith("/")) throw new InvalidInputError(`--pin-dir: expected an absolute path, got ${JSON.stringify(pinDir)}`);
  return pinDir;
}

export async function runKernelAgentFromFlags(flags: Flags, io: Output, metrics?: Metrics): Promise<void> {
  refuseTunOnly(flags);
  if (str(flags, "datapathOptions") !== undefined) throw new InvalidInputError("agent --datapath bpf --config: --datapath-options is for cluster mode (--kvstore); from a state file the datapath options are its own");
  const config = str(flags, "config");
  if (config === undefined) throw new InvalidInputError("agent --datapath bpf: --config <state file> is required (endpoints, policies and options come from it)");
  const secondsText = str(flags, "seconds");
  const seconds = secondsText === undefined ? undefined : Number(secondsText);
  if (seconds !== undefined && !(seconds > 0)) throw new InvalidInputError(`--seconds: expected a positive number, got "${secondsText}"`);
  const pinDir = checkedPinDir(flags);
  await runKernelAgent({
    config, stateDir: str(flags, "stateDir")!, pinDir, templatesDir: str(flags, "templatesDir"),
    endpointDevices: parseEndpointDevices((flags.endpointDevice as string[] | undefined) ?? []),
    externalDevice: str(flags, "externalDevice"), detachOnStop: flags.detachOnStop === true, seconds, metrics,
  }, io);
}

/** --endpoint-device default/web=lxcweb in cluster mode: the pod (namespace/name) -> its host-side veth. */
export function parsePodDevices(values: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const v of values) {
    const m = /^([^=/\s]+)\/([^=/\s]+)=(.+)$/.exec(v);
    if (!m) throw new InvalidInputError(`--endpoint-device ${v}: in cluster mode expected NAMESPACE/POD=IFNAME (endpoint ids are numbered by the agent)`);
    if (m[3].length > 15 || /[\s/]/.test(m[3])) throw new InvalidInputError(`--endpoint-device ${v}: ${JSON.stringify(m[3])} is not an interface name (1-15 characters, no spaces or "/")`);
    const pod = `${m[1]}/${m[2]}`;
    if (out.has(pod)) throw new InvalidInputError(`--endpoint-device ${v}: pod ${pod} given twice`);
    out.set(pod, m[3]);
  }
  return out;
}

/** `membrane agent --datapath bpf --kvstore <spec> --node <name>`: the kernel datapath driven by the cluster. */
export async function runClusterKernelAgentFromFlags(flags: Flags, metrics: Metrics | undefined, io: Output): Promise<void> {
  refuseTunOnly(flags);
  const cluster = clusterAgentFlags(flags);
  const secondsText = str(flags, "seconds");
  const seconds = secondsText === undefined ? undefined : Number(secondsText);
  if (seconds !== undefined && !(seconds > 0)) throw new InvalidInputError(`--seconds: expected a positive number, got "${secondsText}"`);
  const pinDir = checkedPinDir(flags);
  const externalDevice = str(flags, "externalDevice");
  if (cluster.options?.nat && externalDevice === undefined) {
    throw new InvalidInputError(`--datapath-options ${str(flags, "datapathOptions")}: nat is on, which with --datapath bpf needs --external-device (masquerading happens in bpf_host there)`);
  }
  const podDevices = parsePodDevices((flags.endpointDevice as string[] | undefined) ?? []);
  const store = await openKvstoreFromOptions(flags as KvstoreCliOptions, process.env, metrics);
  try {
    await runClusterKernelAgent({
      ...cluster, store, stateDir: str(flags, "stateDir")!, pinDir, templatesDir: str(flags, "templatesDir"), podDevices,
      externalDevice, detachOnStop: flags.detachOnStop === true, seconds, metrics, options: cluster.options,
    }, io);
  } catch (err) {
    await store.close().catch(() => {}); // idempotent: the agent may have closed it already
    throw err;
  }
}
