/**
 * `membrane agent --datapath tun`: brings up the TUN forwarder with the
 * datapath configuration from a state file, routes the given prefixes into
 * the device (routing.ts), restores conntrack from the last run, and keeps a
 * status file for `membrane status`.
 *
 * The order of a start, each step only once the one before it succeeded:
 *   1. arguments checked (routes, table, rules);
 *   2. the state dir created 0700 (a path that is not a directory: exit 2);
 *   3. its lock taken (another agent there: exit 2, before any route or
 *      device is touched); temporaries of writes a killed agent never
 *      finished removed; --discard-snapshot sets the snapshot aside;
 *   4. the forwarder started: the snapshot is checked whole and restored, or
 *      refused whole (exit 2, saying how to start without it), and rewritten
 *      at once as this run's;
 *   5. routes and rules installed, the status file written, and only then
 *      "forwarding" printed.
 * While forwarding, the worker writes a snapshot every --snapshot-interval
 * (so a SIGKILL loses at most one interval) and a report every second.
 * SIGINT/SIGTERM (signals.ts): the first stops cleanly (final snapshot,
 * routing removed, status file removed, lock released), the second is
 * reported and ignored, the third forces an exit and says what is lost.
 */
import { exitNow } from "../sys/exit-now.js";
import type { TunIoChoice } from "../tun/tun-io-choice.js";
import { rmSync } from "node:fs";
import { ForwarderHandle } from "../forwarder/controller.js";
import type { WorkerMessage } from "../forwarder/protocol.js";
import type { SnapshotWritten } from "../forwarder/snapshot-writer.js";
import type { EspPathOptions } from "../forwarder/esp-path.js";
import { resolveOptions, type ResolvedOptions } from "../config.js";
import { InvalidInputError, MembraneError, NotSupportedError } from "../errors.js";
import { writeStatus, statusPath, readStatus, type AgentStatus } from "./status-file.js";
import type { Output } from "../format/output.js";
import { parseIp } from "../packet/address.js";
import type { ServiceSpec } from "../lb/manager.js";
import type { EngineChange } from "../policy/engine.js";
import { loadState } from "../state/file.js";
import { datapathState } from "../state/schema.js";
import { discardSnapshot, lockStateDir, prepareStateDir, removeUnfinishedWrites, snapshotPath } from "./state-dir.js";
import { ShutdownSignals, untilStopRequested, type SignalSource } from "./signals.js";
import { AgentRouting, type RouteRule } from "./routing.js";
import { AgentMetrics } from "./agent-metrics.js";
import { AgentMonitor, endpointLookup } from "./agent-monitor.js";
import { offloadsText } from "./offloads-text.js";
import { startMonitorApi } from "./monitor-api.js";
import type { Metrics } from "../metrics/registry.js";

export const REPORT_EVERY_MS = 1000;

export interface AgentOptions {
  options?: ResolvedOptions;
  /** Services from the state file (validated: host/state/services.ts), programmed before forwarding starts. */
  services?: ServiceSpec[];
  /** Endpoints, ipcache and policy entries from the state file, programmed before conntrack is restored. */
  policy?: EngineChange;
  device?: string;
  mtu?: number;
  offloads?: boolean;
  /** Why offloads are on or off, for the start line (host/cli/agent.ts offloadsFromFlags). */
  offloadsWhy?: string;
  /** TUN queues (WorkerStart.device.queues). */
  queues?: number;
  /** An I/O thread per queue or not (WorkerStart.device.ioWorkers); default: only with more CPUs than queues. */
  ioWorkers?: boolean;
  /** How TUN packets cross into JavaScript (WorkerStart.device.io); default "auto". */
  tunIo?: TunIoChoice;
  routes: string[];
  /** Put the routes in this table (policy routing) instead of main. */
  routeTable?: number;
  /** `ip rule` selectors sending traffic to routeTable (routing.ts). */
  routeRules?: RouteRule[];
  stateDir: string;
  /** Seconds between conntrack snapshots while forwarding (default 10). */
  snapshotInterval?: number;
  /** Set the last run's snapshot aside (conntrack.snap.discarded) and start without it. */
  discardSnapshot?: boolean;
  /** Stop after this many seconds (tests, demos); run until a signal otherwise. */
  seconds?: number;
  /** Userspace ESP to other nodes (host/forwarder/esp-path.ts; host/cli/agent-encrypt.ts checks it). */
  encrypt?: EspPathOptions;
  /** Where SIGINT/SIGTERM come from (default: the process). */
  signals?: SignalSource;
  /** `--metrics`: the registry the datapath, bootstrap and regenerations are exported through. */
  metrics?: Metrics;
  /** Policy rules the state file holds (membrane_policy). */
  policyRules?: number;
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

/** --snapshot-interval: seconds, 0.1 to a day. */
export function parseSnapshotInterval(value: string): number {
  const n = Number(value);
  if (!(value.trim() !== "" && Number.isFinite(n) && n >= 0.1 && n <= 86_400)) {
    throw new InvalidInputError(`--snapshot-interval: expected seconds from 0.1 to 86400, got "${value}"`);
  }
  return n;
}

/**
 * What the agent takes from its state file (`--config`), all validated before
 * anything is set up: the datapath options (NAT included), the services, and
 * the policy engine's tables (endpoints, ipcache, policy entries).
 */
export function loadAgentConfig(path: string): Pick<AgentOptions, "options" | "services" | "policy" | "policyRules"> {
  const state = loadState(path);
  const { options, services, policy } = datapathState(state);
  return { options, services: services && [...services], policy, policyRules: state.engine.allRules().length };
}

const ago = (ms: number) => `${(Math.max(0, Date.now() - ms) / 1000).toFixed(1)} s ago`;

export async function runAgent(opts: AgentOptions, io: Output): Promise<void> {
  if (process.getuid?.() !== 0) throw new NotSupportedError("agent: creating a TUN device and routes needs root (CAP_NET_ADMIN)");
  const routes = opts.routes.map(parseCidr);
  const routingOptions = { routes, table: opts.routeTable, rules: opts.routeRules };
  AgentRouting.validate(routingOptions);
  const options = opts.options ?? resolveOptions({});
  const dir = opts.stateDir;
  const everyMs = Math.round((opts.snapshotInterval ?? 10) * 1000);
  const observed = opts.metrics && AgentMetrics.forStateFile(opts.metrics, opts);
  const monitor = new AgentMonitor(endpointLookup(() => opts.policy?.endpoints.upsert ?? []));

  prepareStateDir(dir);
  const lock = await lockStateDir(dir, () => {
    try {
      const s = readStatus(dir);
      return s && `pid ${s.pid}, forwarding on ${s.device} since ${s.startedAt}`;
    } catch {
      return undefined;
    }
  });

  let lastSaved: SnapshotWritten | undefined;
  let stopping = false;
  let installed: AgentRouting | undefined;
  const signals = new ShutdownSignals(io, {
    lost: () => lastSaved
      ? `the conntrack changes since the snapshot of ${ago(lastSaved.writtenAt)} (${lastSaved.entries} entries)`
      : "the conntrack state (no snapshot written yet)",
    force: (_signal, code) => {
      // What can be undone synchronously is: the rules (they would outlive us) and the status file.
      // The device and its routes go with the process; the kernel drops the lock.
      installed?.remove();
      rmSync(statusPath(dir), { force: true });
      exitNow(code);
    },
  }, opts.signals);

  try {
    const unfinished = removeUnfinishedWrites(dir);
    if (unfinished.length) io.out(`membrane agent: removed ${unfinished.length} unfinished write(s) of a previous run from ${dir}`);
    if (opts.discardSnapshot) {
      const to = discardSnapshot(dir);
      io.out(to ? `membrane agent: --discard-snapshot: the last run's conntrack snapshot moved to ${to}; starting without it` : "membrane agent: --discard-snapshot: there was no conntrack snapshot");
    }

    const started = new Date().toISOString();
    let latest: Omit<AgentStatus, "stats" | "counters" | "flows" | "entries" | "updatedAt"> | undefined;
    let lastReport: Extract<WorkerMessage, { type: "report" }> | undefined;
    let statusError: string | undefined;
    const saveStatus = () => {
      if (!latest || !lastReport || stopping) return;
      const r = lastReport;
      try {
        writeStatus(dir, {
          ...latest, updatedAt: new Date().toISOString(), entries: r.entries, stats: r.stats, counters: r.counters, flows: r.flows,
          services: r.services, nat: r.nat, natMappings: r.natMappings,
          snapshot: lastSaved && { path: snapshotPath(dir), sequence: lastSaved.sequence, writtenAt: new Date(lastSaved.writtenAt).toISOString(), entries: lastSaved.entries, everyMs },
        });
        statusError = undefined;
      } catch (err) {
        // Said once per distinct problem: forwarding goes on without a status file.
        const message = (err as Error).message;
        if (message !== statusError) io.err(`membrane agent: warning: ${message}`);
        statusError = message;
      }
    };
    let snapshotError: string | undefined;
    let fwd: ForwarderHandle;
    try {
      fwd = await ForwarderHandle.start({
        options,
        services: opts.services,
        policy: opts.policy,
        device: { name: opts.device, mtu: opts.mtu, offloads: opts.offloads, queues: opts.queues, ioWorkers: opts.ioWorkers, io: opts.tunIo },
        encrypt: opts.encrypt,
        snapshotPath: snapshotPath(dir),
        snapshotEveryMs: everyMs,
        reportEveryMs: REPORT_EVERY_MS,
        onReport: (r) => {
          observed?.report(r);
          lastReport = r;
          saveStatus();
        },
        onMonitor: monitor.deliver,
        onCapture: monitor.deliverCapture,
        onSnapshot: (m) => {
          if (m.saved) {
            lastSaved = m.saved;
            snapshotError = undefined;
          } else if (m.error !== snapshotError) {
            io.err(`membrane agent: warning: conntrack snapshot not written: ${m.error}; forwarding goes on, the last good snapshot is ${lastSaved ? ago(lastSaved.writtenAt) : "none"}`);
            snapshotError = m.error;
          }
        },
      });
    } catch (err) {
      if (err instanceof MembraneError && err.code === "SNAPSHOT_REFUSED") {
        throw new InvalidInputError(
          `${err.message.replace(/^forwarder: /, "")}; nothing was restored and nothing started. ` +
          `Start with --discard-snapshot to set it aside (${dir}/conntrack.snap.discarded) and run without it: its connections are then lost`,
          { cause: err },
        );
      }
      throw err;
    }
    lastSaved = fwd.ready.saved;
    monitor.attach(fwd);
    const api = await startMonitorApi(dir, monitor, opts.metrics).catch(async (err) => {
      await fwd.stop().catch(() => undefined);
      throw err;
    });
    const snap = fwd.ready.snapshot;
    const restoredEntries = snap?.entries ?? 0;
    if (opts.encrypt) io.out(`membrane agent: encryption: ${opts.encrypt.kernel ?? "kernel ESP available; the userspace path is used on the TUN"}; ESP in UDP on ${opts.encrypt.listen}:4500; \`membrane encrypt status\` shows the SAs`);
    if (snap?.skipped) io.out(`membrane agent: conntrack snapshot ${snap.path} not restored: ${snap.skipped}`);

    if (!signals.received) {
      try {
        const r = new AgentRouting(routingOptions, fwd.ready.device);
        r.apply();
        installed = r;
      } catch (err) {
        await api.close();
        await fwd.stop().catch(() => undefined);
        throw err;
      }
      latest = {
        pid: process.pid, datapath: "tun", device: fwd.ready.device, mtu: fwd.ready.mtu, routes, startedAt: started, restoredEntries,
        reportEveryMs: REPORT_EVERY_MS,
      };
      // Before saying "forwarding": from that line on, `membrane status` finds the agent.
      saveStatus();
      const services = opts.services?.length ? `, ${opts.services.length} services` : "";
      const endpoints = opts.policy?.endpoints.upsert.length;
      const policy = endpoints ? `, policy for ${endpoints} endpoints` : "";
      const from = snap && !snap.skipped ? ` (snapshot #${snap.sequence} of pid ${snap.pid}, run ${snap.runId}, written ${ago(snap.writtenAt)})` : "";
      observed?.started();
      io.out(`membrane agent: forwarding on ${fwd.ready.device} (mtu ${fwd.ready.mtu}, ${offloadsText(opts.offloads, opts.offloadsWhy)}${fwd.ready.tunIo ? `, tun io ${fwd.ready.tunIo}` : ""}), ${installed.describe()}${services}${policy}, ${restoredEntries} conntrack entries restored${from}; conntrack saved every ${everyMs / 1000} s; status in ${statusPath(dir)}`);

      await untilStopRequested(signals, opts.seconds);
    }

    stopping = true;
    await api.close();
    let stopped: Extract<WorkerMessage, { type: "stopped" }>;
    try {
      stopped = await fwd.stop();
    } finally {
      const problems = installed?.remove() ?? [];
      installed = undefined;
      rmSync(statusPath(dir), { force: true });
      for (const p of problems) io.err(`membrane agent: warning: could not remove ${p}`);
    }
    lastSaved = stopped.saved ?? lastSaved;
    io.out(`membrane agent: stopped after ${stopped.stats.packetsIn} packets in, ${stopped.stats.packetsOut} out; ${stopped.snapshotEntries} conntrack entries saved`);
  } finally {
    signals.dispose();
    lock.release();
  }
}
