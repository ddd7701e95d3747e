/** How conntrack records and counters print, for replay and the bpf commands alike. */
import { renderTable, tableLines } from "./table.js";
import { formatEntryFlags, formatTcpFlags, formatTuple, formatTupleFlags, PROTO_NAMES, type CtRecord } from "../conntrack/records.js";
import type { DatapathCounters } from "../datapath.js";

export function ctJson(r: CtRecord, now: number) {
  return {
    table: r.table, family: r.tuple.family, src: r.tuple.src, dst: r.tuple.dst, sport: r.tuple.sport, dport: r.tuple.dport,
    proto: r.tuple.proto, createdBy: formatTupleFlags(r.tuple.flags).toLowerCase(), ...r.entry,
    expiresIn: r.entry.lifetime - now,
  };
}

/** The conntrack table as people read it; shared by replay and `membrane ct list`. */
export function ctTable(records: CtRecord[], now: number): string {
  return ctTableLines(records, now).join("\n");
}

/** The same, a line each, for printing without building one string of every row. */
export function ctTableLines(records: CtRecord[], now: number): string[] {
  return tableLines<CtRecord>([
    { header: "TABLE", value: (r) => r.table },
    { header: "BY", value: (r) => formatTupleFlags(r.tuple.flags) },
    { header: "PROTO", value: (r) => PROTO_NAMES[r.tuple.proto] ?? String(r.tuple.proto) },
    { header: "FLOW", value: (r) => formatTuple(r.tuple) },
    { header: "TX PKTS", value: (r) => r.entry.txPackets },
    { header: "TX BYTES", value: (r) => r.entry.txBytes },
    { header: "RX PKTS", value: (r) => r.entry.rxPackets },
    { header: "RX BYTES", value: (r) => r.entry.rxBytes },
    { header: "TCP TX/RX", value: (r) => (r.tuple.proto === 6 ? `${formatTcpFlags(r.entry.txFlagsSeen)}/${formatTcpFlags(r.entry.rxFlagsSeen)}` : "") },
    { header: "STATE", value: (r) => formatEntryFlags(r.entry.flags) },
    { header: "EXPIRES", value: (r) => `${r.entry.lifetime - now}s`, right: true },
  ], records);
}

export function countersText(c: DatapathCounters): string {
  const lines = [
    `Forwarded: egress ${c.forwarded.egress.packets} packets / ${c.forwarded.egress.bytes} bytes, ingress ${c.forwarded.ingress.packets} packets / ${c.forwarded.ingress.bytes} bytes`,
  ];
  if (c.drops.length) {
    lines.push("Drops:");
    lines.push(renderTable([
      { header: "REASON", value: (d: DatapathCounters["drops"][number]) => d.reason },
      { header: "DIR", value: (d) => d.direction },
      { header: "PACKETS", value: (d) => d.packets },
      { header: "BYTES", value: (d) => d.bytes },
      { header: "MEANING", value: (d) => d.text },
    ], c.drops));
  } else {
    lines.push("Drops: none");
  }
  lines.push("Tables:");
  lines.push(renderTable([
    { header: "TABLE", value: (t: [string, DatapathCounters["tables"]["tcp4"]]) => t[0] },
    { header: "ENTRIES", value: (t) => t[1].entries },
    { header: "CREATED", value: (t) => t[1].created },
    { header: "EVICTED", value: (t) => t[1].evicted },
    { header: "FULL DROPS", value: (t) => t[1].createFailed },
    { header: "GC DELETED", value: (t) => t[1].gcDeleted },
    { header: "GC RUNS", value: (t) => t[1].gcRuns },
  ], Object.entries(c.tables)));
  return lines.join("\n");
}
