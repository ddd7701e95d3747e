/**
 * What both datapaths offer: the Wasm core (Datapath) and the kernel program
 * run through BPF_PROG_TEST_RUN (KernelDatapath). Replay, the differential
 * suite and the CLI speak to this, so the same traffic goes through either.
 */
import type { PolicyTableStore } from "./policy/tables.js";
import type { Direction, LinkKind, PacketMeta } from "./batch.js";
import type { CtRecord, CtTableName } from "./conntrack/records.js";
import type { DatapathCounters, GcResult } from "./datapath.js";
import type { PacketVerdict } from "./verdict.js";
import type { LbTableWriter } from "./lb/tables.js";
import type { NatTables } from "./nat/tables.js";

export type EngineName = "wasm" | "bpf";

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
