/**
 * The kernel datapath of `membrane agent --datapath bpf` (to be wired by the
 * agent's CLI): endpoints are pods' veths, each running its own instance of
 * the bpf_lxc template on the host side; every instance and the optional
 * bpf_host on the node's external device share the node's maps through their
 * pins; policy changes from the engine go into those maps through the same
 * writer as the TUN datapath's; conntrack and NAT GC run on the pinned maps
 * on the adaptive schedule.
 *
 * Restart: stop({ keepPrograms: true }) leaves every filter attached and the
 * maps pinned; the next agent's start() replaces each endpoint's programs in
 * place (tc replace at the same handle and priority), so packets never meet a
 * device without its program and established connections keep their entries.
 */
import type { ResolvedOptions } from "../config.js";
import { resolveOptions } from "../config.js";
import type { BpfObject } from "../bpf/object.js";
import { readFileSync } from "node:fs";
import { InvalidInputError, wrap } from "../errors.js";
import type { TcAttachment } from "../bpf/tc.js";
import { attachHostProgram } from "./host-program.js";
import { loadConfiguredObject } from "./load.js";
import { PinnedGc, type PinnedGcRun } from "./pinned-gc.js";
import { KernelPolicyTables } from "./policy-tables.js";
import { KernelLbTables } from "./lb-tables.js";
import { bpfObjectPath } from "../tools/build-bpf.js";
import { ServiceManager } from "../lb/manager.js";
import { programDatapath } from "../state/program.js";
import type { DatapathState } from "../state/schema.js";
import { TemplateCache } from "./templates/cache.js";
import { ENDPOINT_FILTER, TemplatedEndpoints, type EndpointDevice, type UpsertResult } from "./templates/endpoint-programs.js";
import { detachTcFilter, interfaceIndex } from "../bpf/tc.js";
import type { TemplateShape } from "./templates/shape.js";
import { PolicyDatapathWriter } from "../policy/datapath-writer.js";
import type { EngineChange } from "../policy/engine.js";
import type { EndpointRecord, IpcacheRecord } from "../policy/types.js";
import type { DatapathCounters } from "../engine.js";
import { readKernelCounters } from "./counters.js";
import { KernelMonitorRing } from "./monitor-ring.js";
import { removeStaleLxcCalls } from "./lxc-stages.js";

export interface KernelAgentOptions {
  options?: ResolvedOptions;
  /** Where the node's maps are pinned (kept across restarts). */
  pinDir: string;
  /** Template cache directory (default /var/lib/membrane/templates). */
  templatesDir?: string;
  /** The host-side veth of each endpoint, by endpoint id; endpoints without one get map records only. */
  devices: ReadonlyMap<number, EndpointDevice>;
  /** bpf_host on the node's external device (masquerading happens there, not in the endpoint programs). */
  externalDevice?: EndpointDevice;
  /** Notified of every GC run. */
  onGc?: (run: PinnedGcRun) => void;
}

/** The template shape of an endpoint: its enforcement, NAT left to bpf_host. */
export function endpointShape(ep: Pick<EndpointRecord, "enforceIngress" | "enforceEgress">): Partial<TemplateShape> {
  return { nat: false, enforceIngress: ep.enforceIngress, enforceEgress: ep.enforceEgress };
}

const valuesOf = ({ enforceIngress: _i, enforceEgress: _e, ...values }: EndpointRecord) => values;

export class KernelAgentDatapath {
  readonly cache: TemplateCache;
  readonly endpoints: TemplatedEndpoints;
  readonly gc: PinnedGc;
  /** The node's services, in the pinned LB maps (programDatapath and later reloads go through it). */
  readonly services: ServiceManager;
  readonly options: ResolvedOptions;
  readonly #resolved: ResolvedOptions;
  readonly #writer: PolicyDatapathWriter;
  /** Holds the node's maps open (and creates and pins them on a first start). */
  readonly #maps: BpfObject;
  #host: { object: BpfObject; attachments: TcAttachment[] } | undefined;
  readonly #records = new Map<number, EndpointRecord>();
  /** What programming the start state said (e.g. a Maglev table small for its backends). */
  readonly warnings: string[] = [];

  private constructor(private readonly opts: KernelAgentOptions, cache: TemplateCache, maps: BpfObject, resolved: ResolvedOptions) {
    this.cache = cache;
    this.#maps = maps;
    this.#resolved = resolved;
    this.options = resolved;
    this.services = new ServiceManager([this.lbTables()], resolved.lb);
    this.endpoints = new TemplatedEndpoints({ cache, options: resolved, pinDir: opts.pinDir });
    this.#writer = new PolicyDatapathWriter([new KernelPolicyTables(maps)]);
    this.gc = new PinnedGc({ pinDir: opts.pinDir, lru: resolved.conntrack.whenFull === "evict-lru", onRun: opts.onGc });
  }

  /**
   * Removes templates no endpoint uses, opens (or creates) the pinned maps,
   * attaches bpf_host when asked, applies `initial` (endpoints, ipcache,
   * policy) and starts GC.
   */
  static async start(opts: KernelAgentOptions, initial?: EngineChange | DatapathState): Promise<KernelAgentDatapath> {
    if (!(opts.devices instanceof Map)) throw new InvalidInputError("kernel datapath: devices must be a Map of endpoint id -> { ifname, netns? }");
    const resolved = opts.options ?? resolveOptions({});
    const cache = new TemplateCache({ dir: opts.templatesDir });
    // Endpoints recorded on a template (even one found corrupt and removed, to be rebuilt under the same key) may have filters tail-calling its stages.
    const used = cache.list().filter((e) => e.endpoints.length > 0).map((e) => e.key);
    cache.removeUnused([]);
    // The node-wide stages of the templates just removed: nothing attached tail-calls them any more.
    removeStaleLxcCalls(opts.pinDir, [...used, ...cache.list().map((e) => e.key)]);
    let maps: BpfObject;
    try {
      // The maps holder is the generic bpf_lxc as built (every map, no endpoint), its programs not loaded:
      // no template (no compile), no verifier run, and nothing a kernel feature probe would have to refuse.
      maps = loadConfiguredObject(readFileSync(bpfObjectPath("bpf_lxc")), resolved, { name: "membrane_maps", pinDir: opts.pinDir, reusePinned: true, mapsOnly: true });
    } catch (err) {
      throw wrap("open the node's datapath maps", err);
    }
    const agent = new KernelAgentDatapath(opts, cache, maps, resolved);
    try {
      if (opts.externalDevice) {
        agent.#host = attachHostProgram(opts.externalDevice, resolved, opts.pinDir);
      }
      if (initial && "options" in initial) {
        // The same programming as the TUN datapath's (services, then the policy tables), then the endpoints' programs.
        agent.warnings.push(...programDatapath(agent, initial));
        if (initial.policy) await agent.syncPrograms(initial.policy);
      } else if (initial) await agent.apply(initial);
      agent.gc.start();
      return agent;
    } catch (err) {
      agent.stop({ keepPrograms: false });
      throw err;
    }
  }

  /**
   * Applies an engine change: the maps first (validated completely before a
   * write), then each endpoint with a device is instantiated when new or when
   * its values or enforcement changed (no compile unless its shape is new),
   * and removed endpoints are detached.
   */
  async apply(change: EngineChange): Promise<Map<number, UpsertResult>> {
    this.#writer.applyChange(change);
    return this.syncPrograms(change);
  }

  /** The endpoints' programs for a change whose map writes are done: new or changed ones instantiated, removed ones detached. */
  async syncPrograms(change: EngineChange): Promise<Map<number, UpsertResult>> {
    for (const id of change.endpoints.remove) {
      this.endpoints.remove(id);
      this.#records.delete(id);
    }
    const results = new Map<number, UpsertResult>();
    for (const ep of change.endpoints.upsert) {
      const device = this.opts.devices.get(ep.id);
      if (!device || (ep.ipv4 === undefined && ep.ipv6 === undefined)) continue;
      const before = this.#records.get(ep.id);
      if (before && JSON.stringify(before) === JSON.stringify(ep) && this.endpoints.endpoints.has(ep.id)) continue;
      results.set(ep.id, await this.endpoints.upsert(valuesOf(ep), device, endpointShape(ep)));
      this.#records.set(ep.id, ep);
    }
    return results;
  }

  /**
   * The endpoint ids the pinned maps hold, by address: what a restarted
   * agent numbered its endpoints with, so it can give each pod its id again
   * (a pod renumbered would find its address taken by its old record).
   */
  previousEndpointIds(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [id, addresses] of this.#writer.endpointIds().records) for (const a of addresses) out.set(a, id);
    return out;
  }

  /**
   * Makes the maps and programs hold exactly `want` (engine.snapshot()) and
   * `ipcache`: for an agent whose first full view of its endpoints is
   * complete. Endpoints the pinned maps, the template cache or this process
   * know that `want` does not have (gone while no agent ran, or numbered
   * differently by an older agent) lose their policy entries, records and
   * programs: filters this process holds are detached, and filters a previous
   * agent left are removed from the ifindex its template record names,
   * unless a current endpoint's device has that ifindex now.
   */
  reconcile(want: EngineChange, ipcache: readonly IpcacheRecord[]): { removed: number[]; detached: number } {
    const current = new Set(want.endpoints.upsert.map((e) => e.id));
    const held = this.#writer.endpointIds();
    const recorded = new Map<number, number>(); // id -> ifindex, from the template cache's endpoint records
    for (const entry of this.cache.list()) for (const ep of entry.endpoints) recorded.set(ep.id, ep.ifindex);
    const stale = [...new Set([...held.records.keys(), ...held.policy, ...recorded.keys(), ...this.endpoints.endpoints.keys()])].filter((id) => !current.has(id)).sort((a, b) => a - b);
    this.#writer.setPolicy(want.policy);
    this.#writer.setIpcache(ipcache);
    this.#writer.setEndpoints(want.endpoints.upsert.filter((e) => e.ipv4 !== undefined || e.ipv6 !== undefined));
    const liveIfindexes = new Set<number>();
    for (const live of this.endpoints.endpoints.values()) {
      try {
        if (!live.device.netns) liveIfindexes.add(interfaceIndex(live.device.ifname));
      } catch {
        // its device is gone: nothing of a stale endpoint can be on it
      }
    }
    let detached = 0;
    for (const id of stale) {
      if (this.endpoints.remove(id)) detached++;
      else {
        const ifindex = recorded.get(id) ?? 0;
        if (ifindex > 0 && !liveIfindexes.has(ifindex)) {
          let any = false;
          for (const direction of ["ingress", "egress"] as const) any = detachTcFilter(ifindex, direction, ENDPOINT_FILTER) || any;
          if (any) detached++;
        }
      }
      this.cache.forgetEndpoint(id);
      this.#records.delete(id);
    }
    return { removed: stale, detached };
  }

  #monitor: KernelMonitorRing | undefined;

  /** Forwards, drops and conntrack stats from the pinned maps, read now (at a scrape or a status write). */
  counters(): DatapathCounters {
    return readKernelCounters(this.#maps);
  }

  /** The programs' shared monitor ring buffer and settings (pinned: every endpoint instance writes the one ring). */
  monitor(): KernelMonitorRing {
    return (this.#monitor ??= new KernelMonitorRing(this.#maps));
  }

  /** The node's endpoint, ipcache and policy maps (for programDatapath). */
  policyTables(): KernelPolicyTables {
    return new KernelPolicyTables(this.#maps);
  }

  /** The node's LB maps (for programDatapath and the service manager). */
  lbTables(): KernelLbTables {
    return new KernelLbTables(this.#maps, this.#resolved.lb);
  }

  /**
   * Stops GC and closes fds. keepPrograms: leave every filter attached for the
   * next agent (a restart); otherwise detach the endpoints and bpf_host. The
   * pinned maps stay either way (unpin the directory to drop them).
   */
  stop({ keepPrograms }: { keepPrograms: boolean }): void {
    this.gc.close();
    // Monitoring off: programs left running must not keep filling a ring nobody reads.
    if (this.#monitor) this.#monitor.configure(undefined);
    if (keepPrograms) this.endpoints.release();
    else {
      for (const id of [...this.endpoints.endpoints.keys()]) this.endpoints.remove(id);
      for (const a of this.#host?.attachments ?? []) a.detach(); // in the namespace they were attached in
    }
    if (keepPrograms) for (const a of this.#host?.attachments ?? []) a.abandon();
    this.#host?.object.close();
    this.#host = undefined;
    this.#maps.close();
  }
}

