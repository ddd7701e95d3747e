/** Flows per service backend, for the demo's live view and `membrane status`. */
import type { ServiceFlowSummary } from "../lb/service-flows.js";
import { renderTable } from "./table.js";

/** Flows per service backend (from conntrack): which backend answered, for the live view and `membrane status`. */
export function formatServiceFlows(rows: ServiceFlowSummary[]): string {
  return renderTable<ServiceFlowSummary>([
    { header: "SERVICE", value: (r) => r.frontend },
    { header: "BACKEND", value: (r) => `${r.backendId} => ${r.backend}` },
    { header: "FLOWS", value: (r) => r.flows },
    { header: "PKTS TO", value: (r) => r.txPackets },
    { header: "ANSWERS", value: (r) => r.rxPackets },
  ], rows);
}
