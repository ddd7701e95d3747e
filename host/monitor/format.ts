/**
 * One line per monitor event for people, as `cilium monitor` prints them:
 *   xx drop (Policy denied) flow EGRESS ep 1 10.91.0.1:40000 -> 10.92.0.2:7001 UDP len 39
 *   -> trace EGRESS ep 1 10.91.0.1:40000 -> 10.92.0.2:7000 UDP CT_NEW len 39
 *   Policy verdict denied EGRESS ep 1 identity 2 10.91.0.1:40000 -> 10.92.0.2:7001 UDP
 */
import type { MonitorEventView } from "./event.js";

const hostPort = (addr: string | undefined, port: number | undefined) =>
  addr === undefined ? "?" : port === undefined ? addr : addr.includes(":") ? `[${addr}]:${port}` : `${addr}:${port}`;

export function formatMonitorEvent(e: MonitorEventView): string {
  const ep = e.endpoint !== undefined ? ` ep ${e.endpoint}` : "";
  const flow = `${hostPort(e.src, e.sport)} -> ${hostPort(e.dst, e.dport)}${e.proto ? ` ${e.proto}` : ""}${e.tcpFlags ? ` [${e.tcpFlags}]` : ""}`;
  switch (e.type) {
    case "drop":
      return `xx drop (${e.reasonText}) ${e.direction}${ep} ${flow} len ${e.length}`;
    case "trace":
      return `-> trace ${e.direction}${ep} ${flow} ${e.ctResult} len ${e.length}`;
    case "policy-verdict":
      return `Policy verdict ${e.verdict} ${e.direction}${ep} identity ${e.identity} ${flow}`;
  }
}
