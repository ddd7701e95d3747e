/**
 * The running agent's status, written to <state dir>/status.json after every
 * report so `membrane status` can show it without talking to the agent.
 */
import { existsSync, readFileSync, renameSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import type { ForwarderStats } from "../forwarder/forwarder.js";
import type { DatapathCounters } from "../engine.js";
import type { FlowSummary, NatSummary } from "../forwarder/protocol.js";
import type { ServiceFlowSummary } from "../lb/service-flows.js";
import { InvalidInputError } from "../errors.js";

export const DEFAULT_STATE_DIR = "/run/membrane";

export interface AgentStatus {
  pid: number;
  datapath: "tun";
  device: string;
  mtu: number;
  routes: string[];
  startedAt: string;
  updatedAt: string;
  restoredEntries: number;
  entries: number;
  stats: ForwarderStats;
  counters: DatapathCounters;
  flows: FlowSummary[];
  /** Flows per service backend (absent: no services). */
  services?: ServiceFlowSummary[];
  /** The newest masquerade mappings and how many there are (absent: an agent from before NAT). */
  nat?: NatSummary[];
  natMappings?: number;
}

export function statusPath(stateDir: string): string {
  return join(stateDir, "status.json");
}

export function writeStatus(stateDir: string, status: AgentStatus): void {
  mkdirSync(stateDir, { recursive: true });
  const path = statusPath(stateDir);
  writeFileSync(`${path}.tmp`, JSON.stringify(status, (_k, v) => (typeof v === "bigint" ? Number(v) : v)));
  renameSync(`${path}.tmp`, path);
}

export function readStatus(stateDir: string): AgentStatus | undefined {
  const path = statusPath(stateDir);
  if (!existsSync(path)) return undefined;
  try {
    return JSON.parse(readFileSync(path, "utf8")) as AgentStatus;
  } catch (err) {
    throw new InvalidInputError(`read ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** Whether the process that wrote the status still runs. */
export function agentAlive(status: AgentStatus): boolean {
  try {
    process.kill(status.pid, 0);
    return true;
  } catch {
    return false;
  }
}
