/**
 * `membrane agent --datapath tun`: brings up the TUN forwarder with the
 * datapath configuration from a state file, routes the given prefixes into
 * the device, restores conntrack from the last run, and keeps a status file
 * for `membrane status`. SIGINT/SIGTERM stop it cleanly: conntrack is saved
 * so established connections survive the restart.
 */
import { join } from "node:path";
import { rmSync } from "node:fs";
import { ForwarderHandle } from "../forwarder/controller.js";
import { resolveOptions, type ResolvedOptions } from "../config.js";
import { InvalidInputError, NotSupportedError } from "../errors.js";
import { ip } from "../sys/netns/iproute2.js";
import { writeStatus, statusPath, type AgentStatus } from "./status-file.js";
import type { Output } from "../format/output.js";
import { parseIp } from "../packet/address.js";
import type { ServiceSpec } from "../lb/manager.js";
import type { EngineChange } from "../policy/engine.js";
import { loadState } from "../state/file.js";
import { datapathState } from "../state/schema.js";

export interface AgentOptions {
  options?: ResolvedOptions;
  /** Services from the state file (validated: host/state/services.ts), programmed before forwarding starts. */
  services?: ServiceSpec[];
  /** Endpoints, ipcache and policy entries from the state file, programmed before conntrack is restored. */
  policy?: EngineChange;
  device?: string;
  mtu?: number;
  offloads?: boolean;
  routes: string[];
  stateDir: string;
  /** Stop after this many seconds (tests, demos); run until a signal otherwise. */
  seconds?: number;
}

/** Validates "10.0.0.0/8" or "fd00::/64" before anything is set up. */
export function parseCidr(cidr: string): string {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(cidr);
  if (!m) throw new InvalidInputError(`--route ${cidr}: expected ADDRESS/PREFIX-LENGTH`);
  const { family } = (() => {
    try { return parseIp(m[1]); } catch (err) { throw new InvalidInputError(`--route ${cidr}: ${(err as Error).message}`); }
  })();
  const len = Number(m[2]);
  if (len > (family === 4 ? 32 : 128)) throw new InvalidInputError(`--route ${cidr}: prefix length ${len} is too long for IPv${family}`);
  return cidr;
}

/**
 * What the agent takes from its state file (`--config`), all validated before
 * anything is set up: the datapath options (NAT included), the services, and
 * the policy engine's tables (endpoints, ipcache, policy entries).
 */
export function loadAgentConfig(path: string): Pick<AgentOptions, "options" | "services" | "policy"> {
  const { options, services, policy } = datapathState(loadState(path));
  return { options, services: services && [...services], policy };
}

export async function runAgent(opts: AgentOptions, io: Output): Promise<void> {
  if (process.getuid?.() !== 0) throw new NotSupportedError("agent: creating a TUN device and routes needs root (CAP_NET_ADMIN)");
  const routes = opts.routes.map(parseCidr);
  const options = opts.options ?? resolveOptions({});
  const started = new Date().toISOString();
  let latest: Omit<AgentStatus, "stats" | "counters" | "flows" | "entries" | "updatedAt"> | undefined;
  const fwd = await ForwarderHandle.start({
    options,
    services: opts.services,
    policy: opts.policy,
    device: { name: opts.device, mtu: opts.mtu, offloads: opts.offloads },
    snapshotPath: join(opts.stateDir, "conntrack.snap"),
    onReport: (r) => {
      if (!latest) return;
      writeStatus(opts.stateDir, { ...latest, updatedAt: new Date().toISOString(), entries: r.entries, stats: r.stats, counters: r.counters, flows: r.flows, services: r.services, nat: r.nat, natMappings: r.natMappings });
    },
  });
  const restoredEntries = Object.values(fwd.ready.restored).reduce((s, n) => s + n, 0);
  try {
    ip("link", "set", "dev", fwd.ready.device, "up");
    for (const r of routes) ip("route", "replace", r, "dev", fwd.ready.device);
  } catch (err) {
    await fwd.stop();
    throw err;
  }
  latest = { pid: process.pid, datapath: "tun", device: fwd.ready.device, mtu: fwd.ready.mtu, routes, startedAt: started, restoredEntries };
  const services = opts.services?.length ? `, ${opts.services.length} services` : "";
  const endpoints = opts.policy?.endpoints.upsert.length;
  const policy = endpoints ? `, policy for ${endpoints} endpoints` : "";
  io.out(`membrane agent: forwarding on ${fwd.ready.device} (mtu ${fwd.ready.mtu}), routes ${routes.join(", ") || "none"}${services}${policy}, ${restoredEntries} conntrack entries restored; status in ${statusPath(opts.stateDir)}`);

  await new Promise<void>((resolve) => {
    const finish = () => resolve();
    // Held open until a signal or the deadline: nothing else may keep the event loop alive.
    const keepAlive = setInterval(() => {}, 1 << 30);
    const done = () => { clearInterval(keepAlive); finish(); };
    process.once("SIGINT", done);
    process.once("SIGTERM", done);
    if (opts.seconds !== undefined) setTimeout(done, opts.seconds * 1000);
  });
  const stopped = await fwd.stop();
  rmSync(statusPath(opts.stateDir), { force: true });
  io.out(`membrane agent: stopped after ${stopped.stats.packetsIn} packets in, ${stopped.stats.packetsOut} out; ${stopped.snapshotEntries} conntrack entries saved`);
}
