/**
 * The flags of `membrane agent` in cluster mode (`--kvstore <spec> --node
 * <name>`), checked here and handed to host/agent/cluster-agent.ts. The
 * state-file agent (host/cli/agent.ts) selects this mode when --node or
 * --kvstore is given; --config then is refused (the cluster is the config).
 */
import { Option } from "commander";
import { InvalidInputError } from "../errors.js";
import { parseIp } from "../packet/address.js";
import { parsePrefix } from "../packet/cidr.js";
import type { NodeAddress } from "../kvstore/records/node.js";
import { runClusterAgent } from "../agent/cluster-agent.js";
import { loadDatapathOptionsFile } from "../state/datapath-options.js";
import type { ResolvedOptions } from "../config.js";
import type { EspPathOptions } from "../forwarder/esp-path.js";
import { integerArg } from "./command.js";
import { addKvstoreOptions, openKvstoreFromOptions, type KvstoreCliOptions } from "./kvstore-options.js";
import type { Output } from "../format/output.js";
import type { Metrics } from "../metrics/registry.js";
import type { Command } from "commander";

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** Options cluster mode adds to `membrane agent` (the kvstore ones come from addKvstoreOptions). */
export const CLUSTER_AGENT_OPTIONS: Option[] = [
  new Option("--node <name>", "cluster mode: this node's name (registered in the kvstore under a lease)"),
  new Option("--node-ip <address>", "cluster mode: an address other nodes reach this node at (repeatable; one per family)").argParser(collect),
  new Option("--pod-cidr <cidr>", "cluster mode: this node's pod CIDR (repeatable; one per family), routed into the device").argParser(collect),
  new Option("--encryption-key <n>", "cluster mode: IPsec key index (SPI) this node sends with, 0..15 (default 0: none)"),
  new Option("--route-device <name>", "cluster mode: the link toward the other nodes (default: the kernel's choice for each next hop)"),
  new Option("--datapath-options <file>", "cluster mode (tun or bpf; bpf NAT needs --external-device): JSON with the state file's datapath options (conntrack, fragments, hashSeed, policy, lb, nat: masquerading)"),
];

/** Adds cluster mode's options (and the shared --kvstore ones) to the agent command. */
export function addClusterAgentOptions(cmd: Command): void {
  for (const o of CLUSTER_AGENT_OPTIONS) cmd.addOption(o);
  addKvstoreOptions(cmd);
}

export function isClusterMode(flags: Record<string, unknown>): boolean {
  return flags.node !== undefined || flags.kvstore !== undefined;
}

type Flags = Record<string, string | string[] | boolean | undefined>;
const str = (flags: Flags, key: string) => (typeof flags[key] === "string" ? (flags[key] as string) : undefined);

/** The cluster-mode flags, checked before anything is opened or set up. */
export function clusterAgentFlags(flags: Flags): { node: string; addresses: NodeAddress[]; ipv4AllocCidr?: string; ipv6AllocCidr?: string; encryptionKey: number; routeDevice?: string; options?: ResolvedOptions } {
  if (flags.config !== undefined) throw new InvalidInputError("agent: --config and --node/--kvstore exclude each other (in cluster mode the kvstore holds the services and policies)");
  const node = str(flags, "node");
  if (node === undefined || node.trim() === "") throw new InvalidInputError("agent: --node <name> is required with --kvstore");
  if (!/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(node)) throw new InvalidInputError(`--node ${node}: expected a DNS-style name (lower-case letters, digits, "-" and ".")`);
  const ips = (flags.nodeIp as string[] | undefined) ?? [];
  if (ips.length === 0) throw new InvalidInputError("agent: --node-ip <address> is required in cluster mode (other nodes route to this node's pods through it)");
  const addresses: NodeAddress[] = [];
  const families = new Set<number>();
  for (const a of ips) {
    let family: number;
    try {
      family = parseIp(a).family;
    } catch (err) {
      throw new InvalidInputError(`--node-ip ${a}: ${(err as Error).message}`);
    }
    if (families.has(family)) throw new InvalidInputError(`--node-ip ${a}: a second IPv${family} address (give one per family)`);
    families.add(family);
    addresses.push({ type: "InternalIP", ip: a });
  }
  let ipv4AllocCidr: string | undefined;
  let ipv6AllocCidr: string | undefined;
  for (const c of (flags.podCidr as string[] | undefined) ?? []) {
    const p = parsePrefix(c, `--pod-cidr ${c}`);
    if (p.family === 4) {
      if (ipv4AllocCidr) throw new InvalidInputError(`--pod-cidr ${c}: a second IPv4 pod CIDR (give one per family)`);
      ipv4AllocCidr = p.text;
    } else {
      if (ipv6AllocCidr) throw new InvalidInputError(`--pod-cidr ${c}: a second IPv6 pod CIDR (give one per family)`);
      ipv6AllocCidr = p.text;
    }
  }
  const encryptionKey = integerArg("encryption-key", str(flags, "encryptionKey"), 0, 15, "an IPsec key index") ?? 0;
  const optionsFile = str(flags, "datapathOptions");
  const options = optionsFile === undefined ? undefined : loadDatapathOptionsFile(optionsFile);
  return { node, addresses, ipv4AllocCidr, ipv6AllocCidr, encryptionKey, routeDevice: str(flags, "routeDevice"), options };
}

/**
 * Runs the agent in cluster mode. `common` are the flags both modes share,
 * already checked by host/cli/agent.ts (device, mtu, offloads, routes, state
 * dir, seconds, snapshot interval).
 */
export async function runClusterAgentFromFlags(
  flags: Flags,
  common: { device?: string; mtu?: number; offloads?: boolean; offloadsWhy?: string; routes: string[]; stateDir: string; seconds?: number; snapshotInterval?: number; encrypt?: EspPathOptions; metrics?: Metrics },
  io: Output,
): Promise<void> {
  const cluster = clusterAgentFlags(flags);
  const store = await openKvstoreFromOptions(flags as KvstoreCliOptions, process.env, common.metrics);
  try {
    await runClusterAgent({ ...common, ...cluster, store }, io);
  } catch (err) {
    await store.close().catch(() => {}); // idempotent: the agent may have closed it already
    throw err;
  }
}
