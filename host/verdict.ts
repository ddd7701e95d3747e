/** What the datapath decided for one packet, in names rather than codes. */
import {
  CtResult, Verdict, ctResultName, dropReasonName, dropReasonText, type PktDesc,
} from "./generated/layout.js";
import { TABLE_NAMES, type TableName } from "./conntrack/tables.js";

export type CtOutcome = "new" | "established" | "reply" | "related" | "none";

export interface PacketVerdict {
  verdict: "pass" | "drop";
  /** enum drop_reason value; 0 when passed. */
  dropCode: number;
  /** DROP_* name, undefined when passed. */
  dropReason?: string;
  /** Human text of the drop reason. */
  dropText?: string;
  ct: CtOutcome;
  direction: "egress" | "ingress";
  /** Conntrack table of the flow, when tracked. */
  ctTable?: TableName;
  /** The packet as it leaves the datapath. */
  data: Uint8Array;
}

export function describeVerdict(d: Pick<PktDesc, "verdict" | "dropReason" | "ctResult" | "dir" | "ctTable">, data: Uint8Array): PacketVerdict {
  const dropped = d.verdict === Verdict.VERDICT_DROP;
  const ct = (ctResultName[d.ctResult] ?? "CT_NONE").replace("CT_", "").toLowerCase() as CtOutcome;
  return {
    verdict: dropped ? "drop" : "pass",
    dropCode: d.dropReason,
    dropReason: dropped ? dropReasonName[d.dropReason] ?? `DROP_${d.dropReason}` : undefined,
    dropText: dropped ? dropReasonText[d.dropReason] ?? `drop reason ${d.dropReason}` : undefined,
    ct,
    direction: d.dir === 1 ? "ingress" : "egress",
    ctTable: d.ctResult === CtResult.CT_NONE ? undefined : TABLE_NAMES[d.ctTable],
    data,
  };
}
