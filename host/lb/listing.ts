/**
 * What a datapath's LB tables hold, read back record by record (Wasm tables,
 * a kernel object's maps or the pinned maps): services with their slots,
 * backends, reverse NAT, and a summary of every Maglev row a service uses.
 * `membrane bpf lb list` and replay print it; tests compare it.
 */
import { LbAlgorithm } from "../generated/layout.js";
import type { IpFamily } from "../packet/address.js";
import { decodeBackendRecord, decodeRevNatRecord, decodeServiceRecord } from "./records.js";
import { countPerBackend, maxOverMean } from "./table-stats.js";
import type { LbTableName, LbTableWriter } from "./tables.js";
import { IpProto } from "../packet/ip-proto.js";
import { hostPort } from "../format/address.js";

export type LbTableReader = Pick<LbTableWriter, "engine" | "dump" | "readMaglevRow">;

const ALGORITHM_NAME: Record<number, string> = {
  [LbAlgorithm.LB_ALG_RANDOM]: "random", [LbAlgorithm.LB_ALG_LEGACY]: "legacy", [LbAlgorithm.LB_ALG_MAGLEV]: "maglev",
};
const PROTO_NAME: Record<number, string> = { [IpProto.PROTO_TCP]: "tcp", [IpProto.PROTO_UDP]: "udp" };

export function protoName(proto: number): string {
  return PROTO_NAME[proto] ?? String(proto);
}

export interface LbServiceRow {
  family: IpFamily;
  vip: string;
  port: number;
  proto: string;
  algorithm: string;
  revNatIndex: number;
  /** Maglev row (maglev services only). */
  maglevRow?: number;
  /** Backend id of slots 1..count (0 where a slot record is missing). */
  slots: number[];
  /** Slot records above count (none in a consistent table). */
  extraSlots: number;
}

export interface LbBackendRow { family: IpFamily; id: number; addr: string; port: number; proto: string }
export interface LbRevNatRow { family: IpFamily; index: number; addr: string; port: number }

export interface MaglevRowSummary {
  row: number;
  /** The service using it ("10.96.0.10:80/tcp"). */
  service: string;
  entries: number;
  /** Entries per backend id, by id. */
  backends: { id: number; entries: number }[];
  /** Entries holding 0 (no backend: a service with every backend drained). */
  empty: number;
  /** Busiest backend's entries over the mean (1 is perfect). */
  maxOverMean: number;
}

export interface LbListing {
  services: LbServiceRow[];
  backends: LbBackendRow[];
  revNat: LbRevNatRow[];
  maglev: MaglevRowSummary[];
}

export function frontendText(r: { family: IpFamily; vip: string; port: number; proto: string }): string {
  return `${hostPort(r.vip, r.port)}/${r.proto}`;
}

/** Reads every LB table of `tables` (and the Maglev rows its maglev services use). */
export function readLbListing(tables: LbTableReader): LbListing {
  const services: LbServiceRow[] = [];
  const backends: LbBackendRow[] = [];
  const revNat: LbRevNatRow[] = [];
  for (const family of [4, 6] as const) {
    const table = (base: string) => `${base}${family}` as LbTableName;
    const records = tables.dump(table("services")).map((r) => decodeServiceRecord(family, r));
    const key = (r: { vip: string; port: number; proto: number }) => `${r.vip}|${r.port}|${r.proto}`;
    const slotsOf = new Map<string, Map<number, number>>();
    for (const r of records) {
      if (r.slot === 0) continue;
      const m = slotsOf.get(key(r)) ?? new Map<number, number>();
      m.set(r.slot, r.value.backendId);
      slotsOf.set(key(r), m);
    }
    for (const r of records) {
      if (r.slot !== 0) continue;
      const held = slotsOf.get(key(r)) ?? new Map<number, number>();
      const count = r.value.count;
      services.push({
        family, vip: r.vip, port: r.port, proto: protoName(r.proto),
        algorithm: ALGORITHM_NAME[r.value.algorithm] ?? String(r.value.algorithm), revNatIndex: r.value.revNatIndex,
        ...(r.value.algorithm === LbAlgorithm.LB_ALG_MAGLEV ? { maglevRow: r.value.maglevIndex } : {}),
        slots: Array.from({ length: count }, (_, i) => held.get(i + 1) ?? 0),
        extraSlots: [...held.keys()].filter((s) => s > count).length,
      });
    }
    for (const rec of tables.dump(table("backends"))) {
      const b = decodeBackendRecord(family, rec);
      backends.push({ family, id: b.id, addr: b.address, port: b.port, proto: protoName(b.proto) });
    }
    for (const rec of tables.dump(table("revNat"))) {
      const n = decodeRevNatRecord(family, rec);
      revNat.push({ family, index: n.index, addr: n.address, port: n.port });
    }
  }
  // Kernel maps dump in hash order: sort so both datapaths list alike.
  services.sort((a, b) => a.family - b.family || a.vip.localeCompare(b.vip) || a.port - b.port || a.proto.localeCompare(b.proto));
  backends.sort((a, b) => a.family - b.family || a.id - b.id);
  revNat.sort((a, b) => a.family - b.family || a.index - b.index);
  const maglev = services.filter((s) => s.maglevRow !== undefined).map((s) => maglevSummary(tables, s));
  return { services, backends, revNat, maglev };
}

function maglevSummary(tables: LbTableReader, s: LbServiceRow): MaglevRowSummary {
  const row = tables.readMaglevRow(s.maglevRow!);
  const counts = countPerBackend(row);
  const empty = counts.get(0) ?? 0;
  counts.delete(0);
  const ids = [...counts.keys()].sort((a, b) => a - b);
  return {
    row: s.maglevRow!, service: frontendText(s), entries: row.length,
    backends: ids.map((id) => ({ id, entries: counts.get(id)! })), empty, maxOverMean: maxOverMean(counts, ids),
  };
}
