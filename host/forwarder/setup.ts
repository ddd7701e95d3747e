/**
 * The datapath a forwarder worker starts from: the configuration (conntrack,
 * NAT, service and policy table sizes: DatapathOptions), the services, the
 * policy tables (endpoints, ipcache, policy entries), and only then the
 * conntrack snapshot of the last run. The order matters: a restored flow's
 * next packets must meet the policy and NAT it was created under, and a
 * configuration or policy that does not fit fails before any entry is
 * restored or any device opened.
 *
 * The snapshot is checked whole (host/conntrack/snapshot.ts) and refused
 * whole (SnapshotRefusedError) when anything in it is wrong. One written
 * before the machine last booted is not restored, and the reason says so:
 * its lifetimes are on a clock that restarted, and its connections are gone
 * with the reboot anyway.
 */
import { existsSync, readFileSync } from "node:fs";
import { Datapath } from "../datapath.js";
import { programDatapath } from "../state/program.js";
import { parseSnapshot, restoreSnapshot, sameBoot, SnapshotRefusedError, type SnapshotMeta } from "../conntrack/snapshot.js";
import { formatBootId } from "../sys/boot-id.js";
import type { RestoredSnapshot, WorkerStart } from "./protocol.js";


export async function prepareDatapath(start: Pick<WorkerStart, "options" | "services" | "policy" | "snapshotPath">): Promise<{ dp: Datapath; restored: Record<string, number>; snapshot?: RestoredSnapshot; warnings: string[] }> {
  const dp = await Datapath.create(start.options);
  const warnings = programDatapath(dp, { options: dp.options, services: start.services, policy: start.policy });
  let restored: Record<string, number> = {};
  let snapshot: RestoredSnapshot | undefined;
  if (start.snapshotPath && existsSync(start.snapshotPath)) {
    const path = start.snapshotPath;
    let bytes: Uint8Array;
    try {
      bytes = readFileSync(path);
    } catch (err) {
      throw new SnapshotRefusedError(`read conntrack snapshot ${path}: ${(err as Error).message}`);
    }
    const parsed = parseSnapshot(bytes, `snapshot ${path}`);
    const about = describe(path, parsed.meta);
    if (!sameBoot(parsed.meta)) {
      snapshot = { ...about, entries: 0, skipped: `written before the machine restarted (boot ${formatBootId(parsed.meta.bootId)}): its connections ended with the reboot` };
    } else {
      restored = restoreSnapshot(dp, parsed, `snapshot ${path}`);
      const entries = (["tcp4", "any4", "tcp6", "any6"] as const).reduce((s, t) => s + (restored[t] ?? 0), 0);
      snapshot = { ...about, entries };
    }
  }
  return { dp, restored, snapshot, warnings };
}

function describe(path: string, meta: SnapshotMeta): Omit<RestoredSnapshot, "entries"> {
  return { path, pid: meta.pid, runId: meta.runId, sequence: meta.sequence, writtenAt: meta.writtenAt, horizon: meta.horizon };
}
