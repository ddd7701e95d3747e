/**
 * Commands a running forwarder takes, and their results. Plain data (they
 * cross to the worker thread by structured clone: arrays, objects, the Map in
 * a policy diff), so the agent, a kvstore watcher or a test can build them
 * without a datapath. The worker applies them between batches: every packet
 * of the batch after the one numbered in the result is decided under the new
 * state, none before.
 */
import type { ServiceFrontend, ServiceSpec } from "../lb/manager.js";
import type { NatOptions } from "../nat/config.js";
import type { EngineChange } from "../policy/engine.js";
import type { MonitorSettings } from "../monitor/settings.js";
import type { CaptureSettings } from "../capture/settings.js";
import type { PeerSpec } from "../encrypt/peers-file.js";

export type ForwarderCommand =
  /** Services created or changed (upsert) and removed (delete), as one change: deletes go first. */
  | { kind: "services"; upsert?: ServiceSpec[]; delete?: ServiceFrontend[] }
  /**
   * The masquerade configuration, whole (as the `nat` options). The tables
   * were sized at start: entries and the families masqueraded cannot change.
   * Omitting `seed` keeps the running one.
   */
  | { kind: "nat"; nat: NatOptions }
  /** What the policy engine computed: endpoints, ipcache and policy entries (PolicyEngine methods return it). */
  | { kind: "policy"; change: EngineChange }
  /** Empties conntrack (and the NAT and fragment tables with it): every flow is new again. */
  | { kind: "conntrack-flush" }
  /** Removes expired conntrack and NAT entries now, on the forwarder's clock. */
  | { kind: "conntrack-gc" }
  /** Monitor events on with these settings (checked by the worker), or off (no settings): host/monitor. */
  | { kind: "monitor"; settings?: MonitorSettings }
  /** Packet capture on with these settings (checked by the worker), or off: host/capture. */
  | { kind: "capture"; settings?: CaptureSettings }
  /**
   * The ESP path's peers, whole (replacing the set; SA state of peers kept by
   * name). The cluster agent sends them in the round that installs routes
   * into the TUN, before those routes, so no packet reaches the ESP path for
   * a node it does not know yet. Refused when the forwarder does not encrypt.
   */
  | { kind: "peers"; peers: PeerSpec[] };

export type CommandKind = ForwarderCommand["kind"];
export const COMMAND_KINDS: readonly CommandKind[] = ["services", "nat", "policy", "conntrack-flush", "conntrack-gc", "monitor", "capture", "peers"];

export interface CommandApplied {
  ok: true;
  kind: CommandKind;
  /** One line for people: what changed. */
  summary: string;
  /** Advice that did not stop the change (the service manager's, deletes of services that were not there). */
  warnings: string[];
  /** Batches the forwarder had decided when the change landed: batch `batch + 1` is the first under the new state. */
  batch: number;
}

export interface CommandRejected {
  ok: false;
  kind: CommandKind | "unknown";
  /** The stable error code (INVALID_INPUT, NOT_SUPPORTED, ...; host/errors.ts). */
  code: string;
  /** Why, naming the field ("services.upsert[1].backends[0].port: ..."). Nothing was changed. */
  message: string;
}

export type CommandResult = CommandApplied | CommandRejected;

/** What the controlling thread sends: a command and the id its one reply carries. */
export interface CommandRequest {
  id: number;
  command: ForwarderCommand;
}

export interface CommandReply {
  id: number;
  result: CommandResult;
}

/** Whoever can change a running forwarder: the worker's handle, or an in-thread channel (tests). */
export interface ForwarderController {
  /** Resolves with exactly one result per command; never rejects for a refused change (ok: false says why). */
  apply(command: ForwarderCommand): Promise<CommandResult>;
}
