/**
 * The running agent's status, written to <state dir>/status.json when it
 * starts forwarding and after every report, so `membrane status` can show it
 * without talking to the agent. Written atomically, 0600 (the state dir is
 * 0700): it lists flows and addresses. Whether an agent runs is not read
 * from here but from the state dir's lock (state-dir.ts): a file can be left
 * behind, a lock cannot.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { ForwarderStats } from "../forwarder/forwarder.js";
import type { DatapathCounters } from "../datapath.js";
import type { FlowSummary, NatSummary } from "../forwarder/protocol.js";
import type { ServiceFlowSummary } from "../lb/service-flows.js";
import { InvalidInputError } from "../errors.js";
import { writeFileAtomic } from "../sys/atomic-file.js";
import { STATUS_FILE } from "./state-dir.js";

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
  /** How often the agent reports (ms): a report much older than this means a stuck agent. */
  reportEveryMs?: number;
  /** The newest conntrack snapshot this agent wrote. */
  snapshot?: { path: string; sequence: number; writtenAt: string; entries: number; everyMs: number };
}

export function statusPath(stateDir: string): string {
  return join(stateDir, STATUS_FILE);
}

/** Writes the status atomically (0600; a symlink planted at any name involved is never followed). The dir must exist. */
export function writeStatus(stateDir: string, status: AgentStatus): void {
  writeFileAtomic(statusPath(stateDir), JSON.stringify(status, (_k, v) => (typeof v === "bigint" ? Number(v) : v)));
}

export function readStatus(stateDir: string): AgentStatus | undefined {
  const path = statusPath(stateDir);
  if (!existsSync(path)) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new InvalidInputError(`read ${path}: ${(err as Error).message}`, { cause: err });
  }
  const s = value as Partial<AgentStatus> | null;
  const shapeOk = typeof s === "object" && s !== null && typeof s.pid === "number" && typeof s.device === "string"
    && typeof s.updatedAt === "string" && Array.isArray(s.routes) && typeof s.stats === "object" && s.stats !== null
    && typeof s.counters === "object" && s.counters !== null && Array.isArray(s.counters.drops) && Array.isArray(s.flows);
  if (!shapeOk) throw new InvalidInputError(`read ${path}: not a membrane agent status (pid, device, updatedAt, routes, stats, counters, flows expected)`);
  return s as AgentStatus;
}

/** Age of the status's last report at `now` (ms), or undefined when its time is unreadable. */
export function reportAgeMs(status: AgentStatus, now = Date.now()): number | undefined {
  const at = Date.parse(status.updatedAt);
  return Number.isNaN(at) ? undefined : Math.max(0, now - at);
}

/** A report older than this is stale: a few missed reports, and never less than 5 s. */
export function staleAfterMs(status: AgentStatus): number {
  return Math.max(5_000, 3 * (status.reportEveryMs ?? 1_000));
}
