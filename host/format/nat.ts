/** NAT entries as people and programs read them, for any engine's table and the pinned maps alike. */
import { PROTO_NAMES } from "../conntrack/records.js";
import type { NatRecord } from "../nat/records.js";
import { hostPort } from "./address.js";
import { renderTable } from "./table.js";

export function natJson(r: NatRecord) {
  return { table: r.table, dir: r.dir, proto: r.proto, src: r.src, sport: r.sport, dst: r.dst, dport: r.dport, toAddr: r.toAddr, toPort: r.toPort, created: r.created };
}

/** Both halves of every pair, forward first, as people read them. */
export function natTable(records: NatRecord[]): string {
  const sorted = [...records].sort((a, b) => a.table.localeCompare(b.table) || a.dir.localeCompare(b.dir) || Buffer.compare(a.key, b.key));
  return renderTable<NatRecord>([
    { header: "TABLE", value: (r) => r.table },
    { header: "DIR", value: (r) => r.dir },
    { header: "PROTO", value: (r) => PROTO_NAMES[r.proto] ?? String(r.proto) },
    { header: "MATCH", value: (r) => `${hostPort(r.src, r.sport)} -> ${hostPort(r.dst, r.dport)}` },
    { header: "REWRITE", value: (r) => `${r.dir === "egress" ? "source" : "destination"} ${hostPort(r.toAddr, r.toPort)}` },
    { header: "CT CREATED", value: (r) => r.created },
  ], sorted);
}

