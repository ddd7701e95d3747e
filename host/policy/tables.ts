/**
 * The policy tables as both datapaths hold them: the same names (the kernel's
 * map names), the same key and value bytes (bpf/include/types/policy.h).
 */
import { PolicyTable } from "../generated/layout.js";

export const POLICY_TABLE_IDS = {
  endpoints4: PolicyTable.POLICY_TABLE_ENDPOINT4,
  endpoints6: PolicyTable.POLICY_TABLE_ENDPOINT6,
  ipcache4: PolicyTable.POLICY_TABLE_IPCACHE4,
  ipcache6: PolicyTable.POLICY_TABLE_IPCACHE6,
  policy: PolicyTable.POLICY_TABLE_POLICY,
} as const;
export type PolicyTableName = keyof typeof POLICY_TABLE_IDS;
export const POLICY_TABLE_NAMES = Object.keys(POLICY_TABLE_IDS) as PolicyTableName[];

/** Raw access to one datapath's policy tables; a writer programs several of these alike. */
export interface PolicyTableStore {
  /** "wasm" or "bpf", for messages. */
  readonly engine: string;
  capacity(table: PolicyTableName): number;
  /** Stores or replaces the record; throws when the table refuses it (full). */
  upsert(table: PolicyTableName, key: Uint8Array, value: Uint8Array): void;
  /** Removes the record with `key`; whether it was there. */
  delete(table: PolicyTableName, key: Uint8Array): boolean;
  /** Every record as [key, value], in the store's own order. */
  dump(table: PolicyTableName): Array<[Uint8Array, Uint8Array]>;
}
