/**
 * The datapath a forwarder worker starts from: the configuration (conntrack,
 * NAT, service and policy table sizes: DatapathOptions), the services, the
 * policy tables (endpoints, ipcache, policy entries), and only then the
 * conntrack snapshot of the last run. The order matters: a restored flow's
 * next packets must meet the policy and NAT it was created under, and a
 * configuration or policy that does not fit fails before any entry is
 * restored or any device opened.
 */
import { existsSync, readFileSync } from "node:fs";
import { Datapath } from "../datapath.js";
import { programDatapath } from "../state/program.js";
import { restoreSnapshot } from "../conntrack/snapshot.js";
import type { WorkerStart } from "./protocol.js";

export async function prepareDatapath(start: Pick<WorkerStart, "options" | "services" | "policy" | "snapshotPath">): Promise<{ dp: Datapath; restored: Record<string, number>; warnings: string[] }> {
  const dp = await Datapath.create(start.options);
  const warnings = programDatapath(dp, { options: dp.options, services: start.services, policy: start.policy });
  let restored: Record<string, number> = {};
  if (start.snapshotPath && existsSync(start.snapshotPath)) {
    restored = restoreSnapshot(dp, readFileSync(start.snapshotPath), start.snapshotPath);
  }
  return { dp, restored, warnings };
}
