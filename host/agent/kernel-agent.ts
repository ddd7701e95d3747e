/**
 * `membrane agent --datapath bpf`: the kernel datapath run from a state file.
 * Endpoints are pods' veths: each endpoint's host-side device (named with
 * --endpoint-device ID=IFNAME, or found from the ifindex in its state
 * record) gets its own instance of the bpf_lxc template via tc; bpf_host
 * goes on the node's external device (--external-device) for masquerading.
 * The maps are programmed through the same programDatapath as the TUN
 * datapath's; conntrack and NAT GC run on the pinned maps on the adaptive
 * schedule (host/kernel/pinned-gc.ts).
 *
 * The state file is watched: an edit is applied as the difference from what
 * runs (changeBetween), so changing an endpoint's identity or policy
 * re-instantiates its template (no compile) and swaps its programs in place,
 * and removing an endpoint detaches its programs. A file that does not
 * validate is reported and not applied; the datapath keeps running.
 *
 * Stopping (SIGINT/SIGTERM, --seconds) leaves every program attached and the
 * maps pinned, so packets keep flowing while no agent runs; the next agent
 * replaces each program in place (tc replace at the same handle and
 * priority). --detach-on-stop removes the programs instead.
 */
import { exitNow } from "../sys/exit-now.js";
import { unwatchFile, watchFile } from "node:fs";
import { NotSupportedError } from "../errors.js";
import type { Output } from "../format/output.js";
import { KernelAgentDatapath } from "../kernel/agent-datapath.js";
import type { PinnedGcRun } from "../kernel/pinned-gc.js";
import type { EndpointDevice } from "../kernel/templates/endpoint-programs.js";
import type { ServiceFrontend } from "../lb/manager.js";
import { changeBetween } from "../policy/change-between.js";
import type { EngineChange } from "../policy/engine.js";
import { loadState } from "../state/file.js";
import { datapathState, type DatapathState } from "../state/schema.js";
import { interfaceNameOf } from "../sys/interface-name.js";
import { describeUpsert, gcReporter, kernelFeaturesLine, stopKernelDatapath } from "./kernel-agent-lines.js";
import { lockStateDir, prepareStateDir } from "./state-dir.js";
import { ShutdownSignals, untilStopRequested, type SignalSource } from "./signals.js";
import { KernelAgentObserver } from "./kernel-observe.js";
import type { Metrics } from "../metrics/registry.js";

export interface KernelAgentRunOptions {
  /** The state file: datapath options, services, endpoints, policies. Watched for edits. */
  config: string;
  stateDir: string;
  /** Where the node's maps are pinned (kept across restarts). */
  pinDir: string;
  templatesDir?: string;
  /** Host-side devices by endpoint id (--endpoint-device); others are found from their ifindex. */
  endpointDevices: ReadonlyMap<number, string>;
  /** The node's external device: bpf_host (masquerading) goes there. */
  externalDevice?: string;
  /** Detach every program at stop instead of leaving them for the next agent. */
  detachOnStop?: boolean;
  /** How often the state file is checked for edits (ms, default 500). */
  watchEveryMs?: number;
  seconds?: number;
  signals?: SignalSource;
  /** `--metrics`: datapath counters read from the pinned maps at each scrape. */
  metrics?: Metrics;
}

const EMPTY: EngineChange = { policy: { recomputed: [], changes: new Map() }, endpoints: { upsert: [], remove: [] }, ipcache: { upsert: [], remove: [] }, entriesComputed: 0 };
const frontendKey = (s: ServiceFrontend) => `${s.vip}|${s.port}|${s.proto}`;

export async function runKernelAgent(opts: KernelAgentRunOptions, io: Output): Promise<void> {
  if (process.getuid?.() !== 0) throw new NotSupportedError("agent --datapath bpf: loading and attaching BPF programs needs root (CAP_BPF, CAP_NET_ADMIN)");
  // Validated whole before anything is set up.
  const loaded = loadState(opts.config);
  let state: DatapathState = datapathState(loaded);
  let policyRules = loaded.engine.allRules().length;
  prepareStateDir(opts.stateDir);
  const lock = await lockStateDir(opts.stateDir, () => `a kernel datapath agent on pins ${opts.pinDir}`);
  const say = (line: string) => io.out(`membrane agent: ${line}`);
  const warn = (line: string) => io.err(`membrane agent: warning: ${line}`);

  const devices = new Map<number, EndpointDevice>();
  const unplaced = new Set<number>();
  /** Every endpoint's device, from the flag or its ifindex; said once for each endpoint with neither. */
  const placeEndpoints = (s: DatapathState) => {
    devices.clear();
    for (const ep of s.policy?.endpoints.upsert ?? []) {
      const ifname = opts.endpointDevices.get(ep.id) ?? (ep.ifindex > 0 ? interfaceNameOf(ep.ifindex) : undefined);
      if (ifname) devices.set(ep.id, { ifname });
      else if (!unplaced.has(ep.id)) {
        unplaced.add(ep.id);
        warn(`endpoint ${ep.id} has no device here (give --endpoint-device ${ep.id}=IFNAME, or its host-side veth's ifindex in the state file): its map records are written, no program attached`);
      }
    }
  };
  const observer = new KernelAgentObserver({ stateDir: opts.stateDir, pinDir: opts.pinDir, externalDevice: opts.externalDevice, metrics: opts.metrics, warn,
    endpoints: () => state.policy?.endpoints.upsert ?? [],
    tables: () => ({
      services: state.services?.length ?? 0, policies: policyRules,
      identities: new Set([...(state.policy?.endpoints.upsert ?? []).map((e) => e.identity), ...(state.policy?.ipcache.upsert ?? []).map((i) => i.identity)]).size,
    }),
  });
  const reportGc = gcReporter(say);
  const onGc = (run: PinnedGcRun) => {
    observer.gcRan(run);
    reportGc(run);
  };

  const signals = new ShutdownSignals(io, { lost: () => "nothing (the programs and pinned maps stay)", force: (_s, code) => exitNow(code) }, opts.signals);
  let agent: KernelAgentDatapath | undefined;
  try {
    placeEndpoints(state);
    agent = await KernelAgentDatapath.start({
      options: state.options, pinDir: opts.pinDir, templatesDir: opts.templatesDir, devices,
      externalDevice: opts.externalDevice ? { ifname: opts.externalDevice } : undefined, onGc,
    }, state);
    const running = agent;
    await observer.attach(running);
    for (const w of running.warnings) warn(w);
    say(kernelFeaturesLine());
    if (state.options.nat && !opts.externalDevice) warn("NAT is configured in the state file but no --external-device is given: masquerading happens in bpf_host there, so nothing is masqueraded");
    for (const [id, live] of running.endpoints.endpoints) say(`endpoint ${id} on ${live.device.ifname}: template ${live.key.slice(0, 12)}, programs ${live.attachments.map((a) => a.progId).join(",")}`);
    say(`kernel datapath running: ${running.endpoints.endpoints.size} endpoint(s), ${running.cache.stats.compiles} template(s) compiled${opts.externalDevice ? `, bpf_host on ${opts.externalDevice}` : ""}, maps pinned in ${opts.pinDir}; watching ${opts.config}; status in ${opts.stateDir}`);

    // Edits to the state file, applied one at a time in the order seen.
    let applying = Promise.resolve();
    const reload = async () => {
      let next: DatapathState;
      let nextRules: number;
      try {
        const file = loadState(opts.config);
        next = datapathState(file);
        nextRules = file.engine.allRules().length;
      } catch (err) {
        warn(`${(err as Error).message}; not applied, the datapath runs as before`);
        return;
      }
      // A file without hashSeed gets a random one at each load: that is not an edit.
      const { hashSeed: _was, ...was } = state.options;
      const { hashSeed: _now, ...now } = next.options;
      if (JSON.stringify(was) !== JSON.stringify(now)) {
        warn(`${opts.config}: the datapath options (table sizes, NAT, LB) changed; they take effect at the agent's next start`);
      }
      next = { ...next, options: state.options };
      const compilesBefore = running.cache.stats.compiles;
      try {
        placeEndpoints(next);
        const change = changeBetween(state.policy ?? EMPTY, next.policy ?? EMPTY);
        const results = await running.apply(change);
        const kept = new Set((next.services ?? []).map(frontendKey));
        for (const s of state.services ?? []) if (!kept.has(frontendKey(s))) running.services.deleteService(s);
        for (const s of next.services ?? []) for (const w of running.services.upsertService(s).warnings) warn(w);
        for (const [id, r] of results) say(describeUpsert(id, devices.get(id), r));
        for (const id of change.endpoints.remove) say(`endpoint ${id} removed: programs detached, its map records deleted`);
        state = next;
        policyRules = nextRules;
        say(`applied ${opts.config}: ${change.endpoints.upsert.length} endpoint(s) changed, ${change.endpoints.remove.length} removed, ${running.cache.stats.compiles - compilesBefore} template(s) compiled`);
      } catch (err) {
        warn(`${opts.config}: ${(err as Error).message}; not applied`);
      }
    };
    watchFile(opts.config, { interval: opts.watchEveryMs ?? 500 }, () => {
      applying = applying.then(reload);
    });
    try {
      await untilStopRequested(signals, opts.seconds);
    } finally {
      unwatchFile(opts.config);
      await applying;
    }
  } finally {
    await observer.close();
    if (agent) {
      stopKernelDatapath(agent, opts.detachOnStop === true, opts.pinDir, say);
    }
    signals.dispose();
    lock.release();
  }
}
