/** Messages between the forwarder's worker thread and the thread that controls it. */
import type { MessagePort } from "node:worker_threads";
import type { DatapathOptions } from "../config.js";
import type { DatapathCounters } from "../datapath.js";
import type { ForwarderStats, OffloadMode } from "./forwarder.js";
import type { ServiceSpec } from "../lb/manager.js";
import type { ServiceFlowSummary } from "../lb/service-flows.js";
import type { EngineChange } from "../policy/engine.js";

export interface WorkerStart {
  options: DatapathOptions;
  /** Services to program before forwarding (validated by the caller: host/lb/state.ts). */
  services?: ServiceSpec[];
  /**
   * The policy tables to program before forwarding: endpoints, ipcache and
   * policy entries as a policy engine holds them (PolicyEngine.snapshot() of
   * the state file's engine, validated by the caller; host/policy/state.ts).
   */
  policy?: EngineChange;
  /** TUN device to create ("mbr%d" picks a free name). */
  device: { name?: string; mtu?: number; offloads?: boolean; offloadMode?: OffloadMode };
  /** Conntrack snapshot: restored at start when present, written at stop. */
  snapshotPath?: string;
  batchSize?: number;
  /** Int32Array over it: [0] = stop requested. */
  control: SharedArrayBuffer;
  /** How often the worker reports (ms). */
  reportEveryMs?: number;
  /** The worker's end of the command channel (transferred): CommandRequest in, CommandReply out (commands.ts). */
  commands: MessagePort;
}

export interface FlowSummary {
  table: string;
  flow: string;
  proto: string;
  txPackets: number;
  rxPackets: number;
  state: string;
  expiresIn: number;
}

/** One masquerade mapping, its forward half: the flow as the pod sent it and the source it leaves with. */
export interface NatSummary {
  table: string;
  proto: string;
  flow: string;
  source: string;
}

export type WorkerMessage =
  | { type: "ready"; device: string; mtu: number; restored: Record<string, number> }
  | { type: "report"; stats: ForwarderStats; counters: DatapathCounters; flows: FlowSummary[]; entries: number; services: ServiceFlowSummary[]; nat: NatSummary[]; natMappings: number }
  | { type: "stopped"; stats: ForwarderStats; snapshotEntries: number }
  | { type: "error"; message: string; code?: string };
