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
import type { DatapathCounters } from "../engine.js";
import type { FlowSummary, NatSummary } from "../forwarder/protocol.js";
import type { ServiceFlowSummary } from "../lb/service-flows.js";
import { InvalidInputError } from "../errors.js";
import { writeFileAtomic } from "../sys/atomic-file.js";
import { STATUS_FILE } from "./state-dir.js";

export const DEFAULT_STATE_DIR = "/run/membrane";

export interface AgentStatus {
  pid: number;
  datapath: "tun" | "bpf";
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
  /** The kernel datapath's (datapath "bpf"): where its maps are pinned, each endpoint's device and programs. */
  kernel?: { pinDir: string; endpoints: { id: number; device: string; programs: number[] }[] };
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
  checkStatusShape(value, path);
  return value as AgentStatus;
}

/**
 * The fields printed below, checked before anything is printed: a status file
 * of another shape (another program's, a truncated edit) is refused naming the
 * file and the key instead of failing inside the table code.
 */
function checkStatusShape(s: unknown, path: string): void {
  const bad = (key: string, expected: string) => new InvalidInputError(`status file ${path}: ${key}: expected ${expected}; is it a membrane agent's status file?`);
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
  if (!isObject(s)) throw bad("(top level)", "an object");
  const need = (obj: Record<string, unknown>, prefix: string, keys: string[], type: "number" | "string") => {
    for (const k of keys) if (typeof obj[k] !== type) throw bad(prefix + k, `a ${type}`);
  };
  need(s, "", ["pid", "mtu", "restoredEntries", "entries"], "number");
  need(s, "", ["datapath", "device", "startedAt", "updatedAt"], "string");
  if (!Number.isInteger(s.pid) || (s.pid as number) <= 0) throw bad("pid", "a process id");
  if (!Array.isArray(s.routes) || !s.routes.every((r) => typeof r === "string")) throw bad("routes", "a list of prefixes");
  if (!isObject(s.stats)) throw bad("stats", "an object");
  need(s.stats, "stats.", ["packetsIn", "packetsOut", "batches", "gcRuns"], "number");
  if (!isObject(s.counters)) throw bad("counters", "an object");
  if (!Array.isArray(s.counters.drops)) throw bad("counters.drops", "a list");
  s.counters.drops.forEach((d, i) => { if (!isObject(d) || typeof d.packets !== "number") throw bad(`counters.drops[${i}].packets`, "a number"); });
  for (const key of ["flows", "services", "nat"] as const) {
    const list = s[key];
    if (key !== "flows" && list === undefined) continue;
    if (!Array.isArray(list)) throw bad(key, "a list");
    list.forEach((row, i) => { if (!isObject(row)) throw bad(`${key}[${i}]`, "an object"); });
  }
  if (s.natMappings !== undefined && typeof s.natMappings !== "number") throw bad("natMappings", "a number");
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
