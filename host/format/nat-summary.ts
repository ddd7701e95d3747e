/** The forwarder's masquerade mappings as people read them (demo live view, `membrane status`). */
import type { NatSummary } from "../forwarder/protocol.js";
import { renderTable } from "./table.js";

function natTable(rows: NatSummary[]): string {
  return renderTable<NatSummary>([
    { header: "TABLE", value: (r) => r.table },
    { header: "PROTO", value: (r) => r.proto },
    { header: "FLOW (AS THE POD SENT IT)", value: (r) => r.flow },
    { header: "LEAVES FROM", value: (r) => r.source },
  ], rows);
}

/** A blank line, a heading and up to `rows` mappings; nothing when there are none. */
export function natLines(r: { nat: NatSummary[]; natMappings: number }, rows: number): string[] {
  if (!r.natMappings) return [];
  const noun = r.natMappings === 1 ? "mapping" : "mappings";
  return ["", `masquerading: ${r.natMappings} NAT ${noun}${r.natMappings > rows ? `, the newest ${rows}` : ""}`, natTable(r.nat.slice(0, rows))];
}
