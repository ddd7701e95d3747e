/**
 * A monitor event decoded for people and filters: the datapath's decision
 * (kind, drop reason, direction, conntrack result, the remote identity of a
 * policy verdict) and what the packet's first bytes say (addresses, protocol,
 * ports). The endpoint is resolved by the caller from the address on the
 * endpoint's side (egress: the source, ingress: the destination).
 */
import { ctDirText, ctResultName, decodeMonitorEvent, dropReasonName, dropReasonText, LinkType, MONITOR_EVENT, MonitorLimits } from "../generated/layout.js";
import { decodePacket } from "../packet/decode.js";
import type { RawMonitorEvents } from "./raw-events.js";
import { TYPE_NAME, type MonitorTypeName } from "./settings.js";

export interface MonitorEventView {
  type: MonitorTypeName;
  engine: "wasm" | "kernel";
  /** Drop reason name (DROP_POLICY, ...); for policy verdicts and traces "" when allowed. */
  reason: string;
  /** Cilium's text for the reason ("Policy denied"). */
  reasonText: string;
  /** policy-verdict: "allowed" or "denied"; undefined for other kinds. */
  verdict?: "allowed" | "denied";
  direction: string;
  ctResult: string;
  length: number;
  identity?: number;
  endpoint?: number;
  family?: 4 | 6;
  proto?: string;
  src?: string;
  dst?: string;
  sport?: number;
  dport?: number;
  tcpFlags?: string;
}

/** Resolves an address on the endpoint's side to its endpoint id. */
export type EndpointLookup = (address: string) => number | undefined;

export function decodeMonitorEvents(raw: RawMonitorEvents, endpointOf?: EndpointLookup): MonitorEventView[] {
  const out: MonitorEventView[] = [];
  for (let i = 0; i < raw.count; i++) {
    const e = decodeMonitorEvent(raw.bytes, i * MONITOR_EVENT.size);
    const type = TYPE_NAME[e.type];
    if (!type) continue;
    const data = raw.bytes.subarray(i * MONITOR_EVENT.size + MONITOR_EVENT.offsets.data, i * MONITOR_EVENT.size + MONITOR_EVENT.offsets.data + Math.min(e.capLen, MonitorLimits.MONITOR_CAP_BYTES));
    const p = decodePacket(data, e.link === LinkType.LINK_ETHERNET ? "ethernet" : "ip");
    const direction = (ctDirText[e.dir] ?? String(e.dir)).toUpperCase();
    const v: MonitorEventView = {
      type,
      engine: raw.engine,
      reason: e.reason === 0 ? "" : dropReasonName[e.reason] ?? `DROP_${e.reason}`,
      reasonText: e.reason === 0 ? "" : dropReasonText[e.reason] ?? `reason ${e.reason}`,
      direction,
      ctResult: ctResultName[e.ctResult] ?? String(e.ctResult),
      length: e.len,
    };
    if (type === "policy-verdict") {
      v.verdict = e.reason === 0 ? "allowed" : "denied";
      v.identity = e.identity;
    }
    if (p.family) v.family = p.family;
    if (p.protoName) v.proto = p.protoName;
    if (p.src) v.src = p.src;
    if (p.dst) v.dst = p.dst;
    if (p.sport !== undefined) v.sport = p.sport;
    if (p.dport !== undefined) v.dport = p.dport;
    if (p.tcpFlags !== undefined) v.tcpFlags = p.tcpFlags;
    const local = direction === "INGRESS" ? v.dst : v.src;
    const ep = local !== undefined ? endpointOf?.(local) : undefined;
    if (ep !== undefined) v.endpoint = ep;
    out.push(v);
  }
  return out;
}
