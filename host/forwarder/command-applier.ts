/**
 * Applies forwarder commands to the datapath a worker owns. Every command is
 * validated whole before its first write (services on a dry-run copy of the
 * service manager, policy by the writer's own plan, NAT against the tables
 * the core created), so a refused command leaves every table exactly as it
 * was; the result says why, naming the field. The caller (CommandInbox) runs
 * this between batches only.
 */
import type { Datapath } from "../datapath.js";
import { MembraneError, InvalidInputError, NotSupportedError } from "../errors.js";
import { parsePeerList } from "../encrypt/peers-file.js";
import type { Peer } from "../encrypt/tunnel.js";
import type { ServiceFrontend, ServiceManager, ServiceSpec } from "../lb/manager.js";
import type { ResolvedNat } from "../nat/config.js";
import { resolveLiveNat } from "../nat/live-change.js";
import { PolicyDatapathWriter } from "../policy/datapath-writer.js";
import type { EngineChange } from "../policy/engine.js";
import { parseIp } from "../packet/address.js";
import { applyCapture, applyMonitor } from "./observe-commands.js";
import { COMMAND_KINDS, type CommandKind, type CommandResult, type ForwarderCommand } from "./commands.js";

const COMMAND_KEYS: Record<CommandKind, string[]> = {
  services: ["kind", "upsert", "delete"],
  nat: ["kind", "nat"],
  policy: ["kind", "change"],
  "conntrack-flush": ["kind"],
  "conntrack-gc": ["kind"],
  monitor: ["kind", "settings"],
  capture: ["kind", "settings"],
  peers: ["kind", "peers"],
};

interface Applied {
  summary: string;
  warnings?: string[];
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A frontend as the manager keys it, whatever spelling of the address the command used. */
function frontendId(vip: string, port: number, proto: string): string {
  return `${proto}:${Buffer.from(parseIp(vip).bytes).toString("hex")}:${port}`;
}

export interface CommandApplierOptions {
  /** The forwarder's clock (seconds), for conntrack GC. */
  clock: () => number;
  /** Batches decided so far (Forwarder.stats.batches): stamps each result. */
  batches: () => number;
  /** The ESP path's peer set (EspDevice.setPeers), when the forwarder encrypts. */
  setPeers?: (peers: Peer[]) => void;
}

export class CommandApplier {
  private readonly policy: PolicyDatapathWriter;
  private nat: ResolvedNat | undefined;

  constructor(private readonly dp: Datapath, private readonly opts: CommandApplierOptions) {
    // The writer starts from what the tables hold (the state programmed at start).
    this.policy = new PolicyDatapathWriter([dp.policyTables()]);
    this.nat = dp.options.nat;
  }

  /** Applies one command, or refuses it having changed nothing. Never throws. */
  apply(command: ForwarderCommand): CommandResult {
    const kind = isObject(command) && COMMAND_KINDS.includes(command.kind as CommandKind) ? (command.kind as CommandKind) : undefined;
    try {
      if (!kind) throw new InvalidInputError(`command.kind: expected one of ${COMMAND_KINDS.join(", ")}, got ${JSON.stringify(isObject(command) ? command.kind : command)}`);
      for (const k of Object.keys(command)) {
        if (!COMMAND_KEYS[kind].includes(k)) throw new InvalidInputError(`${kind}.${k}: unknown key (allowed: ${COMMAND_KEYS[kind].join(", ")})`);
      }
      const done = this.run(command);
      return { ok: true, kind, summary: done.summary, warnings: done.warnings ?? [], batch: this.opts.batches() };
    } catch (err) {
      const code = err instanceof MembraneError ? err.code : "INTERNAL";
      return { ok: false, kind: kind ?? "unknown", code, message: err instanceof Error ? err.message : String(err) };
    }
  }

  private run(command: ForwarderCommand): Applied {
    switch (command.kind) {
      case "services": return this.services(command.upsert, command.delete);
      case "nat": return this.changeNat(command.nat);
      case "policy": return this.changePolicy(command.change);
      case "conntrack-flush": {
        const entries = [...this.dp.conntrack()].length;
        this.dp.flush();
        return { summary: `conntrack flushed: ${entries} entries removed` };
      }
      case "monitor": return applyMonitor(this.dp, command.settings);
      case "capture": return applyCapture(this.dp, command.settings);
      case "peers": return this.changePeers(command.peers);
      case "conntrack-gc": {
        const results = this.dp.gc(this.opts.clock());
        const deleted = results.reduce((n, r) => n + r.deleted, 0);
        const scanned = results.reduce((n, r) => n + r.scanned, 0);
        return { summary: `conntrack GC: ${deleted} of ${scanned} entries expired` };
      }
    }
  }

  /** Deletes first (they free room), then upserts; all of it tried on a dry run before the tables see any. */
  private services(upsert: unknown, remove: unknown): Applied {
    if (upsert !== undefined && !Array.isArray(upsert)) throw new InvalidInputError(`services.upsert: expected a list of services, got ${JSON.stringify(upsert)}`);
    if (remove !== undefined && !Array.isArray(remove)) throw new InvalidInputError(`services.delete: expected a list of frontends, got ${JSON.stringify(remove)}`);
    const upserts = (upsert ?? []) as ServiceSpec[];
    const deletes = (remove ?? []) as ServiceFrontend[];
    const plan = (manager: ServiceManager) => {
      const warnings: string[] = [];
      const touched = new Map<string, string>();
      deletes.forEach((f, i) => {
        const at = `services.delete[${i}]`;
        if (!isObject(f)) throw new InvalidInputError(`${at}: expected { vip, port, proto }, got ${JSON.stringify(f)}`);
        for (const k of Object.keys(f)) if (!["vip", "port", "proto"].includes(k)) throw new InvalidInputError(`${at}.${k}: unknown key (allowed: vip, port, proto)`);
        const gone = this.at(at, () => manager.deleteService(f));
        const id = frontendId(f.vip, f.port, f.proto);
        if (touched.has(id)) throw new InvalidInputError(`${at}: ${f.vip} port ${f.port}/${f.proto} is also ${touched.get(id)}`);
        touched.set(id, at);
        if (!gone) warnings.push(`${at}: no service ${f.vip} port ${f.port}/${f.proto} to delete`);
      });
      upserts.forEach((spec, i) => {
        const at = `services.upsert[${i}]`;
        const { service, warnings: w } = this.at(at, () => manager.upsertService(spec));
        const id = frontendId(service.vip, service.port, service.proto);
        if (touched.has(id)) throw new InvalidInputError(`${at}: ${service.vip} port ${service.port}/${service.proto} is also ${touched.get(id)}`);
        touched.set(id, at);
        warnings.push(...w);
      });
      return warnings;
    };
    plan(this.dp.services.dryRun());
    const warnings = plan(this.dp.services);
    return { summary: `services: ${upserts.length} upserted, ${deletes.length} deleted`, warnings };
  }

  private changeNat(input: unknown): Applied {
    const pairs = (t: "nat4" | "nat6") => this.dp.nat.list(t).filter((r) => r.dir === "egress").length;
    const next = resolveLiveNat(input, this.nat, { ipv4: pairs("nat4"), ipv6: pairs("nat6") });
    this.dp.nat.reconfigure(next);
    this.nat = next;
    const fams = [next.ipv4 && `IPv4 as ${next.ipv4.address}`, next.ipv6 && `IPv6 as ${next.ipv6.address}`].filter(Boolean).join(", ");
    return { summary: `NAT reconfigured: ${fams}, ports ${next.ports.min}-${next.ports.max}` };
  }

  private changePolicy(change: EngineChange): Applied {
    if (!isObject(change)) throw new InvalidInputError(`policy.change: expected an engine change { policy, endpoints, ipcache }, got ${JSON.stringify(change)}`);
    const { written, deleted } = this.at("policy.change", () => this.policy.applyChange(change));
    return { summary: `policy: ${written} records written, ${deleted} removed` };
  }

  private changePeers(input: unknown): Applied {
    if (!this.opts.setPeers) throw new NotSupportedError("peers: this forwarder does not encrypt (started without an ESP path)");
    const peers = parsePeerList(input, "peers.peers");
    this.opts.setPeers(peers);
    return { summary: `ESP peers: ${peers.length}` };
  }

  /** Runs `fn`, prefixing an input error with where in the command it happened. */
  private at<T>(path: string, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (err instanceof InvalidInputError) throw new InvalidInputError(`${path}: ${err.message}`, { cause: err });
      throw err;
    }
  }
}
