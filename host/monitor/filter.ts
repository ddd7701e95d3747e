/**
 * Which events a monitor shows: kinds, endpoint, drop reason, address (either
 * side, or within a CIDR) and port (either side). Everything given must
 * match. Checked whole when built, so a bad filter is refused before any
 * event flows.
 */
import { InvalidInputError } from "../errors.js";
import { dropReasonName, dropReasonText } from "../generated/layout.js";
import { addressMatcher } from "../packet/cidr.js";
import { checkMonitorSettings, type MonitorTypeName } from "./settings.js";
import type { MonitorEventView } from "./event.js";

export interface MonitorFilterSpec {
  types?: readonly string[];
  endpoint?: number;
  /** DROP_POLICY, or Cilium's text ("Policy denied"), case-insensitive. */
  reason?: string;
  /** An address or a CIDR. */
  address?: string;
  port?: number;
}

export type MonitorFilter = (e: MonitorEventView) => boolean;

export function buildMonitorFilter(spec: MonitorFilterSpec): MonitorFilter {
  const types = new Set<MonitorTypeName>(checkMonitorSettings({ types: spec.types }).types);
  const endpoint = spec.endpoint;
  if (endpoint !== undefined && (!Number.isInteger(endpoint) || endpoint < 0 || endpoint > 65535)) throw new InvalidInputError(`monitor: endpoint must be 0..65535, got ${endpoint}`);
  const port = spec.port;
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) throw new InvalidInputError(`monitor: port must be 0..65535, got ${port}`);
  let reason: string | undefined;
  if (spec.reason !== undefined) {
    const want = spec.reason.trim().toLowerCase();
    const hit = Object.entries(dropReasonName).find(([code, name]) => name.toLowerCase() === want || dropReasonText[Number(code)]?.toLowerCase() === want);
    if (!hit) throw new InvalidInputError(`monitor: drop reason ${JSON.stringify(spec.reason)} is unknown (e.g. DROP_POLICY or "Policy denied")`);
    reason = hit[1];
  }
  const within = spec.address === undefined ? undefined : addressMatcher(spec.address, "monitor: address");
  return (e) =>
    types.has(e.type) &&
    (endpoint === undefined || e.endpoint === endpoint) &&
    (reason === undefined || e.reason === reason) &&
    (port === undefined || e.sport === port || e.dport === port) &&
    (within === undefined || within([e.src, e.dst]));
}
