/**
 * The library entry point: a datapath instance backed by the Wasm core.
 *
 *   const dp = await Datapath.create({ conntrack: { tcpEntries: 65536 } });
 *   const v = dp.decide(packet, { now: 1000 });       // one packet, for tests and what-if questions
 *   const batch = dp.createBatch(256);                 // many packets, for forwarding
 *   batch.push(p1); batch.push(p2); dp.process(batch, now);
 */
import { resolveOptions, type DatapathOptions, type ResolvedOptions } from "./config.js";
import { PacketBatch } from "./wasm/batch.js";
import type { PacketMeta } from "./engine.js";
import { WasmCore, type CoreBuild } from "./wasm/core.js";
import { METRICS_SLOTS, TABLE_IDS, TABLE_NAMES, type TableName } from "./conntrack/tables.js";
import { decodeMetricsValue, dropReasonName, dropReasonText, METRICS_VALUE, type CtStats } from "./generated/layout.js";
import { CT_TABLES, decodeCtRecord, type CtRecord, type CtTableName } from "./conntrack/records.js";
import type { PacketVerdict } from "./verdict.js";
import { MembraneError } from "./errors.js";
import type { DatapathCounters, DatapathEngine, DropCount, GcResult, PacketInput } from "./engine.js";
import { WasmPolicyTables } from "./wasm/policy-tables.js";
import { WasmLbTables } from "./wasm/lb-tables.js";
import { ServiceManager } from "./lb/manager.js";
import { WasmNat } from "./wasm/nat-tables.js";
import { WasmMonitorRing } from "./wasm/monitor-ring.js";
import { WasmCaptureTap } from "./wasm/capture-tap.js";

export interface BatchOptions {
  /** Bytes per buffer, headroom included (default 2048 + headroom). */
  bufferSize?: number;
  /** Bytes kept free before each packet for encapsulation (default 128). */
  headroom?: number;
}

export type { DatapathCounters, DropCount, GcResult, TrafficCount } from "./engine.js";

const DEFAULT_HEADROOM = 128;

export class Datapath implements DatapathEngine {
  readonly engine = "wasm" as const;
  private single?: PacketBatch;
  private many?: PacketBatch;
  private policy?: WasmPolicyTables;
  private lb?: WasmLbTables;
  private serviceManager?: ServiceManager;
  private monitorRing?: WasmMonitorRing;
  private captureTap?: WasmCaptureTap;
  /** SNAT tables: list, flush, stats (host/nat/tables.ts). */
  readonly nat: WasmNat;

  private constructor(readonly options: ResolvedOptions, private readonly core: WasmCore) {
    this.nat = new WasmNat(core);
  }

  /** Validates the options (throwing InvalidInputError naming the key) and builds the tables. */
  static async create(options: DatapathOptions = {}, build: CoreBuild = "release"): Promise<Datapath> {
    const resolved = resolveOptions(options);
    return new Datapath(resolved, WasmCore.create(resolved, build));
  }

  createBatch(capacity = 256, options: BatchOptions = {}): PacketBatch {
    const headroom = options.headroom ?? DEFAULT_HEADROOM;
    const bufferSize = options.bufferSize ?? 2048 + headroom;
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > 65536) {
      throw new MembraneError("INVALID_INPUT", `create batch: capacity must be 1..65536, got ${capacity}`);
    }
    if (!Number.isInteger(headroom) || headroom < 0 || !Number.isInteger(bufferSize) || bufferSize <= headroom || bufferSize > 65535 + 1024) {
      throw new MembraneError("INVALID_INPUT", `create batch: need 0 <= headroom < bufferSize <= ${65535 + 1024}, got headroom ${headroom}, bufferSize ${bufferSize}`);
    }
    return new PacketBatch(this.core, this.core.createBatch(capacity, bufferSize, headroom));
  }

  /** Decides every packet pushed into `batch`, in place. `now` is the datapath clock in seconds. */
  process(batch: PacketBatch, now: number): void {
    this.captureTap?.before(batch.raw, batch.length);
    this.core.process(batch.raw, batch.length, now);
    this.monitorRing?.afterBatch();
    this.captureTap?.after(batch.raw, batch.length);
  }

  /** The packet capture tap (off until configured): host/wasm/capture-tap.ts. */
  capture(): WasmCaptureTap {
    return (this.captureTap ??= new WasmCaptureTap(this.core));
  }

  /** The monitor's event ring (created on first use; off until configured): host/wasm/monitor-ring.ts. */
  monitor(): WasmMonitorRing {
    return (this.monitorRing ??= new WasmMonitorRing(this.core));
  }

  /** Decides one packet. Convenient for tests and what-if questions; forwarders use batches. */
  decide(packet: Uint8Array, meta: PacketMeta & { now: number }): PacketVerdict {
    if (!this.single || this.single.maxPacket < packet.length) {
      this.single = this.createBatch(1, { bufferSize: Math.max(2048, packet.length) + DEFAULT_HEADROOM });
    }
    this.single.clear();
    this.single.push(packet, meta);
    this.process(this.single, meta.now);
    return this.single.result(0);
  }

  /** Decides packets in order at one clock value, through batches of 256. */
  decideAll(packets: readonly PacketInput[], now: number): PacketVerdict[] {
    const longest = packets.reduce((m, p) => Math.max(m, p.data.length), 0);
    if (!this.many || this.many.maxPacket < longest) {
      this.many = this.createBatch(256, { bufferSize: Math.max(2048, longest) + DEFAULT_HEADROOM });
    }
    const batch = this.many;
    const out: PacketVerdict[] = [];
    for (let i = 0; i < packets.length; i += batch.capacity) {
      batch.clear();
      for (const p of packets.slice(i, i + batch.capacity)) batch.push(p.data, p);
      this.process(batch, now);
      for (let k = 0; k < batch.length; k++) out.push(batch.result(k));
    }
    return out;
  }

  /** The service load-balancer's tables (host/lb), for writers and dumps. */
  lbTables(): WasmLbTables {
    return (this.lb ??= new WasmLbTables(this.core, this.options.lb));
  }

  /** Services of this datapath: upsertService, deleteService, listServices (docs/lb.md). */
  get services(): ServiceManager {
    return (this.serviceManager ??= new ServiceManager([this.lbTables()], this.options.lb));
  }

  /** Nothing to release: the instance's memory goes with it. */
  close(): void {}

  /** Parses a batch without deciding it (benchmarks); returns how many packets were trackable. */
  parseOnly(batch: PacketBatch): number {
    return this.core.parseOnly(batch.raw, batch.length);
  }

  /** Conntrack entries, decoded. Slot order; pass a table name to list one table. */
  *conntrack(table?: CtTableName): Generator<CtRecord> {
    for (const name of table ? [table] : CT_TABLES) {
      for (const rec of this.core.dump(TABLE_IDS[name])) yield decodeCtRecord(name, rec);
    }
  }

  /** Raw records of a table (key bytes then value bytes), for saving state. */
  dumpTable(table: TableName): Uint8Array[] {
    return [...this.core.dump(TABLE_IDS[table])];
  }

  /** Restores records saved with dumpTable; returns how many fit. */
  restoreTable(table: TableName, records: Uint8Array[]): number {
    return this.core.restore(TABLE_IDS[table], records);
  }

  /** Deletes one conntrack entry by its raw key (as CtRecord.key). */
  deleteEntry(table: TableName, key: Uint8Array): boolean {
    const deleted = this.core.deleteKey(TABLE_IDS[table], key);
    if (deleted) this.nat.forget(table, key);
    return deleted;
  }

  /** Removes expired entries from every table. */
  gc(now: number): GcResult[] {
    const results = TABLE_NAMES.map((table) => ({ table, ...this.core.gc(TABLE_IDS[table], now) }));
    this.nat.gc(now); // NAT pairs go with their conntrack entries
    return results;
  }

  /** Empties the conntrack tables (and the fragment tables with them). */
  flush(): void {
    for (const table of TABLE_NAMES) this.core.flush(TABLE_IDS[table]);
    this.nat.flush();
  }

  /** Endpoints, ipcache and policy tables (written through host/policy/datapath-writer). */
  policyTables(): WasmPolicyTables {
    return (this.policy ??= new WasmPolicyTables(this.core));
  }

  tableInfo(table: TableName) {
    return this.core.tableInfo(TABLE_IDS[table]);
  }

  counters(): DatapathCounters {
    const metrics = this.core.metrics();
    const forwarded = { egress: { packets: 0, bytes: 0 }, ingress: { packets: 0, bytes: 0 } };
    const drops: DropCount[] = [];
    for (let slot = 0; slot < METRICS_SLOTS; slot++) {
      const v = decodeMetricsValue(metrics, slot * METRICS_VALUE.size);
      if (v.packets === 0n) continue;
      const reason = slot >> 1;
      const direction = slot & 1 ? "ingress" : "egress";
      const count = { packets: Number(v.packets), bytes: Number(v.bytes) };
      if (reason === 0) forwarded[direction] = count;
      else drops.push({ reason: dropReasonName[reason] ?? `DROP_${reason}`, code: reason, text: dropReasonText[reason] ?? "", direction, ...count });
    }
    const tables = Object.fromEntries(TABLE_NAMES.map((t) => [t, this.core.stats(TABLE_IDS[t])])) as Record<TableName, CtStats>;
    return { forwarded, drops, tables };
  }

  /** Linear memory the instance uses, and what the conntrack tables take of it. */
  memory(): { total: number; tables: Record<TableName, number> } {
    const tables = Object.fromEntries(TABLE_NAMES.map((t) => [t, this.core.tableInfo(TABLE_IDS[t]).bytes])) as Record<TableName, number>;
    return { total: this.core.memoryUsed(), tables };
  }
}
