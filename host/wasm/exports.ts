/**
 * The one typed view of the Wasm core's exports (assembly/index.ts,
 * lb-exports.ts, nat-exports.ts, policy-exports.ts). Only host/wasm/ sees it.
 * Addresses are byte offsets into `memory`; table ids are the shared enums.
 */

/** Conntrack and fragment tables, batches, metrics (assembly/index.ts). */
export interface ConntrackExports {
  memory: WebAssembly.Memory;
  config_ptr(): number;
  /** enum init_result. */
  init(): number;
  memory_used(): number;
  alloc(size: number): number;
  batch_create(count: number, bufSize: number, headroom: number): number;
  metrics_ptr(): number;
  table_stats(id: number): number;
  table_capacity(id: number): number;
  table_count(id: number): number;
  table_key_size(id: number): number;
  table_value_size(id: number): number;
  table_bytes(id: number): number;
  table_dump(id: number, cursor: number, out: number, max: number): number;
  /** How many records the last *_dump call wrote (every table kind shares it). */
  dump_count(): number;
  table_restore(id: number, records: number, count: number): number;
  table_gc(id: number, now: number): number;
  gc_scanned(): number;
  table_flush(id: number): void;
  table_delete(id: number, key: number): number;
  process(desc: number, count: number, now: number): void;
  parse_batch(desc: number, count: number): number;
  /** The monitor's config and ring (assembly/monitor.ts); 0 when memory is full. */
  monitor_create(capacity: number): number;
}

/** Service load-balancing tables (assembly/lb-exports.ts). */
export interface LbExports {
  lb_config_ptr(): number;
  /** enum init_result. */
  lb_init(): number;
  lb_update(id: number, key: number, value: number): number;
  lb_delete(id: number, key: number): number;
  lb_dump(id: number, cursor: number, out: number, max: number): number;
  lb_count(id: number): number;
  lb_capacity(id: number): number;
  lb_maglev_ptr(): number;
}

/** SNAT tables, by family 4 or 6 (assembly/nat-exports.ts). */
export interface NatExports {
  nat_config_ptr(): number;
  /** enum init_result. */
  nat_init(): number;
  nat_stats_ptr(family: number): number;
  nat_count(family: number): number;
  nat_capacity(family: number): number;
  nat_key_size(family: number): number;
  nat_value_size(family: number): number;
  nat_dump(family: number, cursor: number, out: number, max: number): number;
  nat_flush(): void;
  nat_gc(now: number): number;
  nat_forget(family: number, key: number): number;
  nat_restore(family: number, records: number, count: number): number;
  /** Re-reads the NAT configuration into a running core (tables kept); enum init_result. */
  nat_reload(): number;
}

/** Endpoints, ipcache and policy tables (assembly/policy-exports.ts). */
export interface PolicyExports {
  policy_config_ptr(): number;
  policy_table_capacity(id: number): number;
  policy_table_count(id: number): number;
  policy_table_key_size(id: number): number;
  policy_table_value_size(id: number): number;
  policy_table_upsert(id: number, record: number): number;
  policy_table_delete(id: number, key: number): number;
  policy_table_dump(id: number, cursor: number, out: number, max: number): number;
  policy_table_flush(id: number): void;
  ipcache_identity(family: number, addr: number): number;
}

/** Everything the core exports. */
export interface CoreExports extends ConntrackExports, LbExports, NatExports, PolicyExports {}
