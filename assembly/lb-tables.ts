// The service load-balancer's tables (bpf/include/types/lb.h): services,
// backends and reverse NAT per family, plus the flat Maglev array. Sized from
// struct lb_config at lb_init; the host writes them (never the packet path).
import {
  LB4_BACKEND_SIZE, LB4_KEY_SIZE, LB4_REVERSE_NAT_SIZE, LB6_BACKEND_SIZE, LB6_KEY_SIZE, LB6_REVERSE_NAT_SIZE,
  LB_CONFIG_HASH_SEED, LB_CONFIG_MAGLEV_M, LB_CONFIG_MAGLEV_ROWS, LB_CONFIG_MAX_BACKENDS, LB_CONFIG_MAX_REV_NAT,
  LB_CONFIG_MAX_SERVICES, LB_CONFIG_SIZE, LB_SERVICE_SIZE, LB_TABLE_REVNAT6,
} from "./generated/layout";
import { Table, tableCreate } from "./table";
import { regionAlloc } from "./region";
import { cfgHashSeed } from "./config";

export const LB_TABLE_COUNT: i32 = LB_TABLE_REVNAT6 + 1;

export const lbConfigArea = memory.data(LB_CONFIG_SIZE, 8);

export let lbMaglevM: u32 = 0;
export let lbMaglevRows: u32 = 0;
export let lbHashSeed: u32 = 0;
/** Rows of lbMaglevM backend ids (u32), row after row. */
export let lbMaglevBase: usize = 0;
export let lbReady = false;

let lbTableList: usize = 0;

// @ts-ignore: decorator
@inline export function lbTable(id: i32): Table {
  return changetype<Table>(load<usize>(lbTableList + (<usize>id << 2)));
}

function addTable(id: i32, capacity: u32, keySize: i32, valueSize: i32, seed: u64): bool {
  const t = tableCreate(capacity, <u32>keySize, <u32>valueSize, seed + <u64>id);
  if (t === null) return false;
  store<usize>(lbTableList + (<usize>id << 2), changetype<usize>(t));
  return true;
}

/** Creates the tables from struct lb_config at lbConfigArea; false when memory runs out. */
export function lbCreateTables(): bool {
  const services = load<u32>(lbConfigArea + LB_CONFIG_MAX_SERVICES);
  const backends = load<u32>(lbConfigArea + LB_CONFIG_MAX_BACKENDS);
  const revNat = load<u32>(lbConfigArea + LB_CONFIG_MAX_REV_NAT);
  lbMaglevM = load<u32>(lbConfigArea + LB_CONFIG_MAGLEV_M);
  lbMaglevRows = load<u32>(lbConfigArea + LB_CONFIG_MAGLEV_ROWS);
  lbHashSeed = load<u32>(lbConfigArea + LB_CONFIG_HASH_SEED);
  lbTableList = regionAlloc(LB_TABLE_COUNT * 4);
  const maglevBytes = <u64>lbMaglevM * <u64>lbMaglevRows * 4;
  lbMaglevBase = regionAlloc(maglevBytes > 0 ? maglevBytes : 4);
  if (lbTableList == 0 || lbMaglevBase == 0) return false;
  const seed = ((<u64>cfgHashSeed << 32) | <u64>cfgHashSeed) ^ 0x1B873593;
  lbReady = addTable(0, services, LB4_KEY_SIZE, LB_SERVICE_SIZE, seed)
    && addTable(1, services, LB6_KEY_SIZE, LB_SERVICE_SIZE, seed)
    && addTable(2, backends, 4, LB4_BACKEND_SIZE, seed)
    && addTable(3, backends, 4, LB6_BACKEND_SIZE, seed)
    && addTable(4, revNat, 2, LB4_REVERSE_NAT_SIZE, seed)
    && addTable(5, revNat, 2, LB6_REVERSE_NAT_SIZE, seed);
  return lbReady;
}
