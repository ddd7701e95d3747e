/** `membrane status`: what the running agent reports about itself. */
import type { TunIoTuning } from "../tun/io-mode-tuner.js";
import { Command } from "commander";
import { readStatus, reportAgeMs, staleAfterMs, DEFAULT_STATE_DIR } from "../agent/status-file.js";
import { stateDirHeld } from "../agent/state-dir.js";
import { InvalidInputError } from "../errors.js";
import { example, jsonOption, outputOf } from "./command.js";
import { renderTable, toJson } from "../format/table.js";
import { flowsTable } from "../format/flows.js";
import type { Output } from "../format/output.js";
import { MembraneError } from "../errors.js";
import { formatServiceFlows } from "../format/service-flows.js";
import { natLines } from "../format/nat-summary.js";

/** Mappings shown; the report carries the newest 12. */
const STATUS_NAT_ROWS = 12;

export function status(opts: { stateDir?: string; json: boolean }, io: Output): void {
  const dir = opts.stateDir ?? DEFAULT_STATE_DIR;
  // Liveness from the state dir's lock, never from the PID in the file: a PID can be reused, a held lock cannot lie.
  const running = stateDirHeld(dir);
  const s = readStatus(dir);
  if (!running) {
    const left = s ? ` (the status file there is left from pid ${s.pid}, which did not stop cleanly)` : "";
    throw new MembraneError("NOT_RUNNING", `no membrane agent is running (no agent holds ${dir})${left}; start one with \`membrane agent --datapath tun\``);
  }
  if (!s) throw new MembraneError("NOT_RUNNING", `a membrane agent holds ${dir} but has not written its status yet (starting up); try again in a moment`);
  const age = reportAgeMs(s);
  const stale = age === undefined || age > staleAfterMs(s);
  if (opts.json) {
    io.out(toJson(stale ? { ...s, stale: true } : s));
    return;
  }
  if (stale) {
    io.err(`membrane status: warning: the agent's last report is ${age === undefined ? "of unknown age" : `${Math.round(age / 1000)} s old`} (it reports every ${Math.round((s.reportEveryMs ?? 1000) / 1000)} s): it holds ${dir} but may be stuck`);
  }
  const drops = s.counters.drops.reduce((n, d) => n + d.packets, 0);
  if (s.kernel) {
    // The kernel datapath: programs on the endpoints' veths, no device or batches of its own.
    io.out(`agent pid ${s.pid}, datapath ${s.datapath}, maps pinned in ${s.kernel.pinDir}${s.device === "-" ? "" : `, bpf_host on ${s.device}`}, up since ${s.startedAt}, updated ${s.updatedAt}`);
    io.out(`endpoints: ${s.kernel.endpoints.map((e) => `${e.id} on ${e.device} (programs ${e.programs.join(",")})`).join("; ") || "none"}; conntrack: ${s.entries} entries`);
    io.out(`packets: ${s.stats.packetsOut} forwarded, ${drops} dropped; GC runs ${s.stats.gcRuns}`);
  } else {
    io.out(`agent pid ${s.pid}, datapath ${s.datapath} on ${s.device} (mtu ${s.mtu}), up since ${s.startedAt}, updated ${s.updatedAt}`);
    io.out(`routes: ${s.routes.join(", ") || "none"}; conntrack: ${s.entries} entries (${s.restoredEntries} restored at start)`);
    io.out(`packets: ${s.stats.packetsIn} in, ${s.stats.packetsOut} out, ${drops} dropped in ${s.stats.batches} batches; GC runs ${s.stats.gcRuns}`);
    if (s.stats.coalescedWrites !== undefined) {
      // Offload passthrough merging plain packets of a flow into super-packets on write (passthrough-coalescer.ts).
      io.out(`writes: ${s.stats.writes}, of which ${s.stats.coalescedWrites} coalesced super-packets carrying ${s.stats.coalescedPackets ?? 0} packets`);
    }
    if (s.stats.tunIo?.length) io.out(`tun io adaptive: ${s.stats.tunIo.map(tunIoThread).join("; ")}`);
  }
  if (s.flows.length) io.out(flowsTable(s.flows));
  if (s.services?.length) io.out(formatServiceFlows(s.services));
  for (const line of natLines({ nat: s.nat ?? [], natMappings: s.natMappings ?? 0 }, STATUS_NAT_ROWS)) io.out(line);
}


/** One thread's adaptive TUN I/O (io-mode-tuner.ts): "batch (2 decisions, 1 switch; uring 4,200, batch 3,800 ns/pkt)". */
function tunIoThread(t: TunIoTuning): string {
  const ns = (["uring", "batch"] as const).filter((m) => t.nsPerPacket[m] !== undefined).map((m) => `${m} ${Math.round(t.nsPerPacket[m]!).toLocaleString("en-US")}`);
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : word.endsWith("h") ? "es" : "s"}`;
  return `${t.mode} (${plural(t.decisions, "decision")}, ${plural(t.switches, "switch")}${ns.length ? `; ${ns.join(", ")} ns/pkt` : ""})`;
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
