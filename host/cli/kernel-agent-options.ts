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
import type { Metrics } from "../metrics/registry.js";
import { integerArg } from "./command.js";

type Flags = Record<string, string | string[] | boolean | undefined>;
const collect = (value: string, previous: string[] = []) => [...previous, value];
const str = (flags: Flags, key: string) => (typeof flags[key] === "string" ? (flags[key] as string) : undefined);

export const KERNEL_AGENT_OPTIONS: Option[] = [
  new Option("--pin-dir <dir>", "bpf: where the node's maps are pinned, kept across restarts (default /sys/fs/bpf/membrane, or $MEMBRANE_BPFFS)"),
  new Option("--templates-dir <dir>", "bpf: the template cache (default /var/lib/membrane/templates)"),
  new Option("--endpoint-device <id=ifname>", "bpf: endpoint id's host-side veth (repeatable; default: the device with the ifindex in its state record)").argParser(collect),
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

export async function runKernelAgentFromFlags(flags: Flags, io: Output, metrics?: Metrics): Promise<void> {
  for (const key of TUN_ONLY) {
    const given = flags[key];
    if (given !== undefined && !(Array.isArray(given) && given.length === 0)) {
      throw new InvalidInputError(`agent --datapath bpf: --${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} is for the TUN datapath only`);
    }
  }
  const config = str(flags, "config");
  if (config === undefined) throw new InvalidInputError("agent --datapath bpf: --config <state file> is required (endpoints, policies and options come from it)");
  const secondsText = str(flags, "seconds");
  const seconds = secondsText === undefined ? undefined : Number(secondsText);
  if (seconds !== undefined && !(seconds > 0)) throw new InvalidInputError(`--seconds: expected a positive number, got "${secondsText}"`);
  const pinDir = str(flags, "pinDir") ?? defaultPinDir();
  if (!pinDir.startsWith("/")) throw new InvalidInputError(`--pin-dir: expected an absolute path, got ${JSON.stringify(pinDir)}`);
  await runKernelAgent({
    config, stateDir: str(flags, "stateDir")!, pinDir, templatesDir: str(flags, "templatesDir"),
    endpointDevices: parseEndpointDevices((flags.endpointDevice as string[] | undefined) ?? []),
    externalDevice: str(flags, "externalDevice"), detachOnStop: flags.detachOnStop === true, seconds, metrics,
  }, io);
}
