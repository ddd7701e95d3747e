/**
 * What both datapaths offer: the Wasm core (Datapath) and the kernel program
 * run through BPF_PROG_TEST_RUN (KernelDatapath). Replay, the differential
 * suite and the CLI speak to this, so the same traffic goes through either.
 */
import type { PolicyTableStore } from "./policy/tables.js";
import type { CtRecord, CtTableName } from "./conntrack/records.js";
import type { TableName } from "./conntrack/tables.js";
import { CtDir, type CtStats } from "./generated/layout.js";
import type { PacketVerdict } from "./verdict.js";
import type { LbTableWriter } from "./lb/tables.js";
import type { NatTables } from "./nat/tables.js";

export type EngineName = "wasm" | "bpf";

export type LinkKind = "ip" | "ethernet";
export type Direction = "egress" | "ingress" | "auto";

/** The direction byte both datapaths take (enum ct_dir). */
export const DIRECTION_CODE: Record<Direction, number> = {
  egress: CtDir.CT_EGRESS,
  ingress: CtDir.CT_INGRESS,
  auto: CtDir.DIR_AUTO,
};

export interface PacketMeta {
  /** "ip" for bare IP packets (TUN), "ethernet" for frames. Default "ip". */
  link?: LinkKind;
  /** Direction relative to the endpoint; "auto" (default) infers it from conntrack. */
  direction?: Direction;
  /**
   * The L4 checksum is partial (virtio NEEDS_CSUM): its field holds the
   * pseudo-header sum and the writer computes the rest. Rewrites keep it so.
   */
  checksumPartial?: boolean;
}

export interface TrafficCount { packets: number; bytes: number }

export interface DropCount extends TrafficCount {
  reason: string;
  code: number;
  text: string;
  direction: "egress" | "ingress";
}

export interface DatapathCounters {
  forwarded: { egress: TrafficCount; ingress: TrafficCount };
  drops: DropCount[];
  tables: Record<TableName, CtStats>;
}

export interface GcResult {
  table: TableName;
  deleted: number;
  scanned: number;
}

export interface PacketInput {
  data: Uint8Array;
  link?: LinkKind;
  direction?: Direction;
}

export interface DatapathEngine {
  readonly engine: EngineName;
  /** SNAT tables (empty unless the options enable NAT). */
  readonly nat: NatTables;
  /** Decides one packet with the clock at `now` seconds. */
  decide(packet: Uint8Array, meta: PacketMeta & { now: number }): PacketVerdict;
  /** Decides packets in order, all at clock `now`. */
  decideAll(packets: readonly PacketInput[], now: number): PacketVerdict[];
  conntrack(table?: CtTableName): Iterable<CtRecord>;
  counters(): DatapathCounters;
  gc(now: number): GcResult[];
  flush(): void;
  close(): void;
  /** The service load-balancer's tables. */
  lbTables(): LbTableWriter;
  /** Endpoints, ipcache and policy tables (written through host/policy/datapath-writer). */
  policyTables(): PolicyTableStore;
}
