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
import { applyServices } from "../state/services.js";
import { PolicyDatapathWriter } from "../policy/datapath-writer.js";
import { restoreSnapshot } from "../conntrack/snapshot.js";
import type { WorkerStart } from "./protocol.js";

export async function prepareDatapath(start: Pick<WorkerStart, "options" | "services" | "policy" | "snapshotPath">): Promise<{ dp: Datapath; restored: Record<string, number> }> {
  const dp = await Datapath.create(start.options);
  applyServices(dp.services, start.services ?? []);
  if (start.policy) new PolicyDatapathWriter([dp.policyTables()]).applyChange(start.policy);
  let restored: Record<string, number> = {};
  if (start.snapshotPath && existsSync(start.snapshotPath)) {
    restored = restoreSnapshot(dp, readFileSync(start.snapshotPath), start.snapshotPath);
  }
  return { dp, restored };
}
