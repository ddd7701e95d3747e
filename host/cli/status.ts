/** `membrane status`: what the running agent reports about itself. */
import { agentAlive, readStatus, DEFAULT_STATE_DIR } from "../agent/status-file.js";
import { toJson } from "../format/table.js";
import { flowsTable } from "../format/flows.js";
import type { Output } from "../format/output.js";
import { MembraneError } from "../errors.js";
import { formatServiceFlows } from "../format/service-flows.js";
import { natLines } from "../format/nat-summary.js";

/** Mappings shown; the report carries the newest 12. */
const STATUS_NAT_ROWS = 12;

export function status(opts: { stateDir?: string; json: boolean }, io: Output): void {
  const dir = opts.stateDir ?? DEFAULT_STATE_DIR;
  const s = readStatus(dir);
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
  if (s.flows.length) io.out(flowsTable(s.flows));
  if (s.services?.length) io.out(formatServiceFlows(s.services));
  for (const line of natLines({ nat: s.nat ?? [], natMappings: s.natMappings ?? 0 }, STATUS_NAT_ROWS)) io.out(line);
}
