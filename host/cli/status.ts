/** `membrane status`: what the running agent reports about itself. */
import { Command } from "commander";
import { agentAlive, readStatus, statusPath, DEFAULT_STATE_DIR, type AgentStatus } from "../agent/status-file.js";
import { InvalidInputError } from "../errors.js";
import { example, jsonOption, outputOf } from "./command.js";
import { renderTable, toJson } from "./table.js";
import type { Output } from "./output.js";
import { MembraneError } from "../errors.js";
import { formatServiceFlows } from "./lb.js";
import { natLines } from "./nat-summary.js";

/** Mappings shown; the report carries the newest 12. */
const STATUS_NAT_ROWS = 12;

export function status(opts: { stateDir?: string; json: boolean }, io: Output): void {
  const dir = opts.stateDir ?? DEFAULT_STATE_DIR;
  const raw: unknown = readStatus(dir);
  if (raw !== undefined) checkStatusShape(raw, statusPath(dir));
  const s = raw as AgentStatus | undefined;
  if (!s || !agentAlive(s)) {
    throw new MembraneError("NOT_RUNNING", `no membrane agent is running (no live status in ${dir}); start one with \`membrane agent --datapath tun\``);
  }
  if (opts.json) {
    io.out(toJson(s));
    return;
  }
  const drops = s.counters.drops.reduce((n, d) => n + d.packets, 0);
  io.out(`agent pid ${s.pid}, datapath ${s.datapath} on ${s.device} (mtu ${s.mtu}), up since ${s.startedAt}, updated ${s.updatedAt}`);
  io.out(`routes: ${s.routes.join(", ") || "none"}; conntrack: ${s.entries} entries (${s.restoredEntries} restored at start)`);
  io.out(`packets: ${s.stats.packetsIn} in, ${s.stats.packetsOut} out, ${drops} dropped in ${s.stats.batches} batches; GC runs ${s.stats.gcRuns}`);
  if (s.flows.length) {
    io.out(renderTable([
      { header: "TABLE", value: (f: (typeof s.flows)[number]) => f.table },
      { header: "PROTO", value: (f) => f.proto },
      { header: "FLOW", value: (f) => f.flow },
      { header: "TX", value: (f) => f.txPackets },
      { header: "RX", value: (f) => f.rxPackets },
      { header: "STATE", value: (f) => f.state },
      { header: "EXPIRES", value: (f) => `${f.expiresIn}s`, right: true },
    ], s.flows));
  }
  if (s.services?.length) io.out(formatServiceFlows(s.services));
  for (const line of natLines({ nat: s.nat ?? [], natMappings: s.natMappings ?? 0 }, STATUS_NAT_ROWS)) io.out(line);
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

/** `membrane status [--state-dir D] [--json]` */
export function registerStatus(program: Command): void {
  const cmd = program.command("status")
    .description("what the running agent reports: device, routes, packet counts, conntrack flows, services and NAT mappings")
    .option("--state-dir <dir>", `the agent's state directory (default ${DEFAULT_STATE_DIR})`);
  jsonOption(cmd, "the status report as one JSON object");
  example(cmd, "membrane status", "membrane status --state-dir /run/membrane --json");
  cmd.action((o: { stateDir?: string; json: boolean }, self: Command) => {
    status({ stateDir: o.stateDir, json: o.json }, outputOf(self));
  });
}
