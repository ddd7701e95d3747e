// SNAT configuration (struct nat_config), loaded by nat_init into globals, and
// the question it answers on the packet path: is this egress flow masqueraded?
// The host validates the configuration; counts and ranges are still clamped
// here so a bad one can never make the core read outside the struct.
import {
  NAT_CIDR4_ADDR, NAT_CIDR4_MASK, NAT_CIDR4_SIZE, NAT_CIDR6_ADDR, NAT_CIDR6_MASK, NAT_CIDR6_SIZE, NAT_CONFIG_ADDR4,
  NAT_CONFIG_ADDR6, NAT_CONFIG_CLUSTER4, NAT_CONFIG_CLUSTER4_COUNT, NAT_CONFIG_CLUSTER6, NAT_CONFIG_CLUSTER6_COUNT,
  NAT_CONFIG_EXCLUDED4, NAT_CONFIG_EXCLUDED4_COUNT, NAT_CONFIG_EXCLUDED6, NAT_CONFIG_EXCLUDED6_COUNT, NAT_CONFIG_FLAGS,
  NAT_CONFIG_MAX_ENTRIES4, NAT_CONFIG_MAX_ENTRIES6, NAT_CONFIG_PORT_MAX, NAT_CONFIG_PORT_MIN, NAT_CONFIG_RETRIES,
  NAT_CONFIG_SEED, NAT_CONFIG_SIZE, NAT_F_ENABLE4, NAT_F_ENABLE6, NAT_MAX_CIDRS, NAT_MAX_RETRIES,
} from "./generated/layout";

export const natConfigArea = memory.data(NAT_CONFIG_SIZE, 8);

export let natFlags: u32 = 0;
export let natAddr4: u32 = 0; // as loaded: network byte order in memory
export const natAddr6 = memory.data(16, 8);
export let natPortMin: u32 = 1024;
export let natPortRange: u32 = 64512;
export let natRetries: u32 = 0;
export let natSeed: u32 = 0;
export let natMax4: u32 = 0;
export let natMax6: u32 = 0;

function count(off: i32): u32 {
  const n = load<u32>(natConfigArea + off);
  return n < <u32>NAT_MAX_CIDRS ? n : <u32>NAT_MAX_CIDRS;
}

export function natLoadConfig(): void {
  const c = natConfigArea;
  natFlags = load<u32>(c + NAT_CONFIG_FLAGS);
  natAddr4 = load<u32>(c + NAT_CONFIG_ADDR4);
  memory.copy(natAddr6, c + NAT_CONFIG_ADDR6, 16);
  const lo = <u32>load<u16>(c + NAT_CONFIG_PORT_MIN); // ports in the config are host order
  const hi = <u32>load<u16>(c + NAT_CONFIG_PORT_MAX);
  natPortMin = lo;
  natPortRange = hi >= lo ? hi - lo + 1 : 1;
  const r = load<u32>(c + NAT_CONFIG_RETRIES);
  natRetries = r < <u32>NAT_MAX_RETRIES ? r : <u32>NAT_MAX_RETRIES;
  natSeed = load<u32>(c + NAT_CONFIG_SEED);
  natMax4 = load<u32>(c + NAT_CONFIG_MAX_ENTRIES4);
  natMax6 = load<u32>(c + NAT_CONFIG_MAX_ENTRIES6);
}

/**
 * Loads a changed configuration into a running core: addresses, prefixes,
 * ports, retries and seed take effect for the next packet; the table sizes
 * stay as nat_init created them (a family whose table has no room stays off),
 * so no entry can ever land outside its table.
 */
export function natReloadConfig(): void {
  const max4 = natMax4;
  const max6 = natMax6;
  natLoadConfig();
  natMax4 = max4;
  natMax6 = max6;
  if (max4 == 0) natFlags &= ~NAT_F_ENABLE4;
  if (max6 == 0) natFlags &= ~NAT_F_ENABLE6;
}

// @ts-ignore: decorator
@inline export function natEnabled(family: i32): bool {
  return (natFlags & (family == 4 ? NAT_F_ENABLE4 : NAT_F_ENABLE6)) != 0;
}

/** Whether the address at `addr` is the family's masquerade address. */
export function isMasqAddr(addr: usize, family: i32): bool {
  if (family == 4) return load<u32>(addr) == natAddr4;
  return load<u64>(addr) == load<u64>(natAddr6) && load<u64>(addr, 8) == load<u64>(natAddr6, 8);
}

function inList4(addr: u32, listOff: i32, countOff: i32): bool {
  const n = count(countOff);
  for (let i: u32 = 0; i < n; i++) {
    const c = natConfigArea + listOff + <usize>i * NAT_CIDR4_SIZE;
    if ((addr & load<u32>(c + NAT_CIDR4_MASK)) == load<u32>(c + NAT_CIDR4_ADDR)) return true;
  }
  return false;
}

function inList6(addr: usize, listOff: i32, countOff: i32): bool {
  const n = count(countOff);
  for (let i: u32 = 0; i < n; i++) {
    const c = natConfigArea + listOff + <usize>i * NAT_CIDR6_SIZE;
    if ((load<u64>(addr) & load<u64>(c + NAT_CIDR6_MASK)) == load<u64>(c + NAT_CIDR6_ADDR)
      && (load<u64>(addr, 8) & load<u64>(c + NAT_CIDR6_MASK + 8)) == load<u64>(c + NAT_CIDR6_ADDR + 8)) return true;
  }
  return false;
}

/**
 * Egress from `src` to `dst` is masqueraded when the source is a cluster address (any
 * address when no cluster CIDR is set), the destination is not, neither is excluded, and
 * neither is the masquerade address itself (the node's own traffic, or traffic to it).
 */
export function shouldMasquerade(src: usize, dst: usize, family: i32): bool {
  if (isMasqAddr(src, family) || isMasqAddr(dst, family)) return false;
  if (family == 4) {
    const s = load<u32>(src), d = load<u32>(dst);
    if (count(NAT_CONFIG_CLUSTER4_COUNT) != 0 && !inList4(s, NAT_CONFIG_CLUSTER4, NAT_CONFIG_CLUSTER4_COUNT)) return false;
    if (inList4(d, NAT_CONFIG_CLUSTER4, NAT_CONFIG_CLUSTER4_COUNT)) return false;
    return !inList4(s, NAT_CONFIG_EXCLUDED4, NAT_CONFIG_EXCLUDED4_COUNT) && !inList4(d, NAT_CONFIG_EXCLUDED4, NAT_CONFIG_EXCLUDED4_COUNT);
  }
  if (count(NAT_CONFIG_CLUSTER6_COUNT) != 0 && !inList6(src, NAT_CONFIG_CLUSTER6, NAT_CONFIG_CLUSTER6_COUNT)) return false;
  if (inList6(dst, NAT_CONFIG_CLUSTER6, NAT_CONFIG_CLUSTER6_COUNT)) return false;
  return !inList6(src, NAT_CONFIG_EXCLUDED6, NAT_CONFIG_EXCLUDED6_COUNT) && !inList6(dst, NAT_CONFIG_EXCLUDED6, NAT_CONFIG_EXCLUDED6_COUNT);
}
