// Longest-prefix match in linear memory, for the ipcache. One hash table per
// family holds every prefix under the kernel LPM trie's key layout
// ({prefixlen, address with the bits past the prefix zeroed}), so the records
// are byte-identical to the kernel map's. A lookup probes the prefix lengths
// that are present, longest first: at most 33 (IPv4) or 129 (IPv6) probes,
// usually a handful, each one hash lookup, nothing allocated. The list of
// present lengths is rebuilt only when a length appears or disappears.
import { Table, slotAddr, tableCreate, tableFlush, tableInsert, tableLookup, tableRemove } from "./table";
import { regionAlloc } from "./region";

@unmanaged export class Lpm {
  table: usize = 0;   // Table
  addrBytes: u32 = 0; // 4 or 16
  maxLen: u32 = 0;    // 32 or 128
  counts: usize = 0;  // u32 per prefix length 0..maxLen: prefixes of that length
  lengths: usize = 0; // u8 per present length, longest first
  nLengths: u32 = 0;
  probe: usize = 0;   // scratch key, zero-padded to the table's key words
}

// @ts-ignore: decorator
@inline export function lpmTable(l: Lpm): Table {
  return changetype<Table>(l.table);
}

/** An LPM table of `capacity` prefixes of `addrBytes`-byte addresses with `valueSize`-byte values; null without memory. */
export function lpmCreate(capacity: u32, addrBytes: u32, valueSize: u32, seed: u64): Lpm | null {
  const l = changetype<Lpm>(regionAlloc(offsetof<Lpm>()));
  const maxLen = addrBytes << 3;
  const t = tableCreate(capacity, 4 + addrBytes, valueSize, seed);
  const counts = regionAlloc(<u64>(maxLen + 1) << 2);
  const lengths = regionAlloc(maxLen + 1);
  const probe = regionAlloc(32);
  if (changetype<usize>(l) == 0 || t === null || counts == 0 || lengths == 0 || probe == 0) return null;
  l.table = changetype<usize>(t);
  l.addrBytes = addrBytes;
  l.maxLen = maxLen;
  l.counts = counts;
  l.lengths = lengths;
  l.nLengths = 0;
  l.probe = probe;
  return l;
}

/** Writes the key {len, addr masked to len bits} into the probe buffer. */
function buildProbe(l: Lpm, addr: usize, len: u32): void {
  const key = l.probe + 4;
  store<u32>(l.probe, len);
  if (l.addrBytes == 4) {
    // One word: mask in host order, store back in network order.
    const a = bswap<u32>(load<u32>(addr));
    const mask: u32 = len == 0 ? 0 : <u32>(0xFFFFFFFF << (32 - len));
    store<u32>(key, bswap<u32>(a & mask));
    return;
  }
  const full = len >> 3;
  const rest = len & 7;
  memory.copy(key, addr, full);
  let i = full;
  if (rest != 0) {
    store<u8>(key + i, load<u8>(addr + i) & <u8>(<u32>0xFF << (8 - rest)));
    i++;
  }
  memory.fill(key + i, 0, l.addrBytes - i);
}

/** The value of the longest prefix containing the address at `addr`, or 0. */
export function lpmLookup(l: Lpm, addr: usize): usize {
  const t = lpmTable(l);
  for (let i: u32 = 0; i < l.nLengths; i++) {
    buildProbe(l, addr, <u32>load<u8>(l.lengths + i));
    const idx = tableLookup(t, l.probe);
    if (idx != 0) return slotAddr(t, idx);
  }
  return 0;
}

function rebuildLengths(l: Lpm): void {
  let n: u32 = 0;
  for (let len = <i32>l.maxLen; len >= 0; len--) {
    if (load<u32>(l.counts + (<usize>len << 2)) != 0) store<u8>(l.lengths + n++, <u8>len);
  }
  l.nLengths = n;
}

function countLength(l: Lpm, len: u32, delta: i32): void {
  const at = l.counts + (<usize>len << 2);
  const before = load<u32>(at);
  const after = <u32>(<i32>before + delta);
  store<u32>(at, after);
  if (before == 0 || after == 0) rebuildLengths(l);
}

/**
 * The normalized form of the key at `key` ({prefixlen, address}) in the probe
 * buffer, or false when its prefix length is out of range.
 */
function normalize(l: Lpm, key: usize): bool {
  const len = load<u32>(key);
  if (len > l.maxLen) return false;
  buildProbe(l, key + 4, len);
  return true;
}

/**
 * Stores the value at `value` under the prefix `key` (bits past the prefix are
 * ignored). Returns false when the prefix length is out of range or the table is full.
 */
export function lpmUpsert(l: Lpm, key: usize, value: usize): bool {
  if (!normalize(l, key)) return false;
  const t = lpmTable(l);
  let idx = tableLookup(t, l.probe);
  if (idx == 0) {
    idx = tableInsert(t, l.probe);
    if (idx == 0) return false;
    countLength(l, load<u32>(l.probe), 1);
  }
  memory.copy(slotAddr(t, idx), value, t.valueSize);
  return true;
}

/** Removes the prefix `key`; whether it was present. */
export function lpmDelete(l: Lpm, key: usize): bool {
  if (!normalize(l, key)) return false;
  const t = lpmTable(l);
  const idx = tableLookup(t, l.probe);
  if (idx == 0) return false;
  countLength(l, load<u32>(l.probe), -1);
  tableRemove(t, idx);
  return true;
}

export function lpmFlush(l: Lpm): void {
  tableFlush(lpmTable(l));
  memory.fill(l.counts, 0, (<usize>l.maxLen + 1) << 2);
  l.nLengths = 0;
}
