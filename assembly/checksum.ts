// Internet checksum helpers. The packet path only ever updates checksums
// incrementally (RFC 1624: HC' = ~(~HC + ~m + m')); full sums are for tests and
// for headers the datapath builds itself.

/** Folds a 32-bit ones' complement accumulator to 16 bits. */
// @ts-ignore: decorator
@inline export function csumFold(sum: u32): u32 {
  sum = (sum & 0xFFFF) + (sum >> 16);
  sum = (sum & 0xFFFF) + (sum >> 16);
  return sum;
}

/** Ones' complement sum of [ptr, ptr+len), network byte order, as a 32-bit accumulator. */
export function csumPartial(ptr: usize, len: i32, sum: u32): u32 {
  let acc: u64 = sum;
  let i = 0;
  for (; i + 4 <= len; i += 4) acc += <u64>bswap<u32>(load<u32>(ptr + i));
  for (; i + 2 <= len; i += 2) acc += <u64>bswap<u16>(load<u16>(ptr + i));
  if (i < len) acc += <u64>load<u8>(ptr + i) << 8;
  acc = (acc & 0xFFFFFFFF) + (acc >> 32);
  acc = (acc & 0xFFFFFFFF) + (acc >> 32);
  return <u32>acc;
}

/** The checksum value to store for [ptr, ptr+len) (host order result). */
export function csumFull(ptr: usize, len: i32): u16 {
  return <u16>(~csumFold(csumPartial(ptr, len, 0)) & 0xFFFF);
}

/** RFC 1624 eqn. 3 for a 16-bit field change; check, old and new are host-order values. */
// @ts-ignore: decorator
@inline export function csumReplace16(check: u32, oldValue: u32, newValue: u32): u32 {
  return ~csumFold((~check & 0xFFFF) + (~oldValue & 0xFFFF) + newValue) & 0xFFFF;
}

/** RFC 1624 for a 32-bit field change (e.g. an IPv4 address), host-order values. */
// @ts-ignore: decorator
@inline export function csumReplace32(check: u32, oldValue: u32, newValue: u32): u32 {
  const sum: u32 = (~check & 0xFFFF) + (~(oldValue >> 16) & 0xFFFF) + (~oldValue & 0xFFFF) + (newValue >> 16) + (newValue & 0xFFFF);
  return ~csumFold(sum) & 0xFFFF;
}

// ---- L4 checksum fields under rewrite ----
// Whether the packet being decided carries a partial L4 checksum (pkt_flags
// PKT_F_CSUM_PARTIAL). Set per packet by the batch loop before any stage runs.
export let csumPartialMode: bool = false;

export function setCsumPartialMode(partial: bool): void {
  csumPartialMode = partial;
}

/**
 * Updates the L4 checksum at `field` for a 32-bit change that the pseudo-header
 * covers (an address). `old`/`new` are host-order values. A zero UDP checksum
 * ("none", IPv4 only) stays zero; a computed zero is sent as 0xFFFF. Under a
 * partial checksum the field holds the non-inverted pseudo-header sum, so it
 * moves the other way round, as the kernel's inet_proto_csum_replace4 does.
 */
export function l4ReplaceAddr32(field: usize, oldValue: u32, newValue: u32, udp: bool): void {
  const check = <u32>bswap<u16>(load<u16>(field));
  if (csumPartialMode) {
    store<u16>(field, bswap<u16>(<u16>(~csumReplace32(~check & 0xFFFF, oldValue, newValue) & 0xFFFF)));
    return;
  }
  if (udp && check == 0) return;
  let next = csumReplace32(check, oldValue, newValue);
  if (udp && next == 0) next = 0xFFFF;
  store<u16>(field, bswap<u16>(<u16>next));
}

/**
 * Updates the L4 checksum at `field` for a 16-bit change of the L4 header
 * itself (a port, an ICMP identifier). A partial checksum does not cover the
 * L4 header yet, so it is left alone.
 */
export function l4ReplacePort(field: usize, oldValue: u32, newValue: u32, udp: bool): void {
  if (csumPartialMode) return;
  const check = <u32>bswap<u16>(load<u16>(field));
  if (udp && check == 0) return;
  let next = csumReplace16(check, oldValue, newValue);
  if (udp && next == 0) next = 0xFFFF;
  store<u16>(field, bswap<u16>(<u16>next));
}
