/** The forwarder's busiest flows as a table, for the demo's live view and `membrane status`. */
import type { FlowSummary } from "../forwarder/protocol.js";
import { renderTable } from "./table.js";

export function flowsTable(flows: readonly FlowSummary[]): string {
  return renderTable<FlowSummary>([
    { header: "TABLE", value: (f) => f.table },
    { header: "PROTO", value: (f) => f.proto },
    { header: "FLOW", value: (f) => f.flow },
    { header: "TX PKTS", value: (f) => f.txPackets },
    { header: "RX PKTS", value: (f) => f.rxPackets },
    { header: "STATE", value: (f) => f.state },
    { header: "EXPIRES", value: (f) => `${f.expiresIn}s`, right: true },
  ], [...flows]);
}
