// A fixed-capacity hash table in linear memory: the shape behind every datapath
// table. Slots live in one array sized at init (capacity is exact, no load
// factor to pay for), chained from a power-of-two bucket array. When the table
// is full, the entry to give up is chosen by CLOCK (second chance): a hit sets
// the slot's reference bit, and the hand sweeps the slots, clearing set bits and
// stopping at the first clear one. That approximates least-recently-used the way
// the kernel's LRU maps do, without touching other slots on every hit (a linked
// LRU list cost two or three extra cache misses per packet).
// Slot layout: [value][key padded to 8][chain u32][meta u32]. Slot indices are
// 1-based; 0 means none.
import { hashWords } from "./hash";
import { regionAlloc } from "./region";

// Bits of a slot's meta word.
// @ts-ignore: decorator
@inline const META_USED: u32 = 1;
// @ts-ignore: decorator
@inline const META_REF: u32 = 2;

@unmanaged export class Table {
  base: usize = 0;        // address of slot 0 (never used), so slot i is at base + i * slotSize
  buckets: usize = 0;
  bucketMask: u32 = 0;
  capacity: u32 = 0;
  count: u32 = 0;
  slotSize: u32 = 0;
  keySize: u32 = 0;
  keyWords: u32 = 0;
  valueSize: u32 = 0;
  linkOff: u32 = 0;
  freeHead: u32 = 0;
  nextFresh: u32 = 1;     // slots from here on were never used: no free list to build at init
  hand: u32 = 1;          // the CLOCK hand: next slot considered for replacement
  seed: u64 = 0;
  // Optional count of the stored keys whose byte at tagOff equals tagValue
  // (tableCountTag), so a caller can skip a probe for such a key when none
  // is stored: conntrack counts its IN-flagged tuples. tagOff < 0: not counted.
  tagOff: i32 = -1;
  tagValue: u32 = 0;
  tagged: u32 = 0;
}

function nextPow2(n: u32): u32 {
  let p: u32 = 1;
  while (p < n) p <<= 1;
  return p;
}

/** Allocates a table; returns null when memory cannot hold it. */
export function tableCreate(capacity: u32, keySize: u32, valueSize: u32, seed: u64): Table | null {
  const t = changetype<Table>(regionAlloc(offsetof<Table>()));
  if (changetype<usize>(t) == 0) return null;
  const keyWords = (keySize + 7) >> 3;
  const linkOff = valueSize + (keyWords << 3);
  const slotSize = (linkOff + 8 + 7) & ~7;
  const nb = nextPow2(capacity);
  const slots = regionAlloc(<u64>(capacity + 1) * slotSize);
  const buckets = regionAlloc(<u64>nb << 2);
  if (slots == 0 || buckets == 0) return null;
  t.base = slots;
  t.buckets = buckets;
  t.bucketMask = nb - 1;
  t.capacity = capacity;
  t.count = 0;
  t.slotSize = slotSize;
  t.keySize = keySize;
  t.keyWords = keyWords;
  t.valueSize = valueSize;
  t.linkOff = linkOff;
  t.freeHead = 0;
  t.nextFresh = 1;
  t.hand = 1;
  t.seed = seed;
  t.tagOff = -1;
  t.tagValue = 0;
  t.tagged = 0;
  return t;
}

/**
 * Starts counting, in t.tagged, the stored keys whose byte at `off` is
 * `value` (before the first insert: the count starts at 0). Kept by
 * tableInsert, tableRemove and tableFlush, the only writers of keys.
 */
export function tableCountTag(t: Table, off: i32, value: u32): void {
  t.tagOff = off;
  t.tagValue = value;
  t.tagged = 0;
}

// @ts-ignore: decorator
@inline function isTagged(t: Table, key: usize): bool {
  return t.tagOff >= 0 && <u32>load<u8>(key + <usize>t.tagOff) == t.tagValue;
}

/** Bytes of linear memory the table occupies (slots + buckets). */
export function tableBytes(t: Table): u64 {
  return <u64>(t.capacity + 1) * t.slotSize + (<u64>(t.bucketMask + 1) << 2);
}

// @ts-ignore: decorator
@inline export function slotAddr(t: Table, idx: u32): usize {
  return t.base + <usize>idx * t.slotSize;
}
// @ts-ignore: decorator
@inline export function keyAddr(t: Table, idx: u32): usize {
  return slotAddr(t, idx) + t.valueSize;
}
// @ts-ignore: decorator
@inline function chainOf(t: Table, idx: u32): usize { return slotAddr(t, idx) + t.linkOff; }
// @ts-ignore: decorator
@inline function metaOf(t: Table, idx: u32): usize { return slotAddr(t, idx) + t.linkOff + 4; }

// @ts-ignore: decorator
@inline function bucketOf(t: Table, key: usize): usize {
  const h = hashWords(key, t.keyWords, t.seed);
  return t.buckets + ((<usize>(<u32>(h ^ (h >> 32)) & t.bucketMask)) << 2);
}

function keyEquals(a: usize, b: usize, words: u32): bool {
  for (let i: u32 = 0; i < words; i++) {
    if (load<u64>(a + (<usize>i << 3)) != load<u64>(b + (<usize>i << 3))) return false;
  }
  return true;
}

/** Finds the slot holding `key` (zero-padded to keyWords * 8 bytes); 0 when absent. */
export function tableLookup(t: Table, key: usize): u32 {
  let idx = load<u32>(bucketOf(t, key));
  while (idx != 0) {
    if (keyEquals(keyAddr(t, idx), key, t.keyWords)) return idx;
    idx = load<u32>(chainOf(t, idx));
  }
  return 0;
}

/** Marks a slot as used since the hand last passed it. */
// @ts-ignore: decorator
@inline export function tableTouch(t: Table, idx: u32): void {
  store<u32>(metaOf(t, idx), META_USED | META_REF);
}

/**
 * The slot CLOCK gives up next: sweeps from the hand, clearing reference bits,
 * to the first used slot whose bit is clear. Only meaningful when the table is
 * full (every slot used); 0 for an empty table. Bounded by two sweeps.
 */
export function tableVictim(t: Table): u32 {
  const cap = t.capacity;
  if (t.count == 0) return 0;
  let hand = t.hand;
  for (let steps: u32 = 0; steps <= cap << 1; steps++) {
    if (hand > cap) hand = 1;
    const meta = metaOf(t, hand);
    const m = load<u32>(meta);
    if ((m & META_USED) != 0) {
      if ((m & META_REF) == 0) {
        t.hand = hand + 1;
        return hand;
      }
      store<u32>(meta, META_USED);
    }
    hand++;
  }
  return 0;
}

/**
 * Inserts `key` (which must be absent) with a zeroed value; returns the slot, or
 * 0 when every slot is in use. New entries start unreferenced.
 */
export function tableInsert(t: Table, key: usize): u32 {
  let idx = t.freeHead;
  if (idx != 0) {
    t.freeHead = load<u32>(chainOf(t, idx));
  } else if (t.nextFresh <= t.capacity) {
    idx = t.nextFresh++;
  } else {
    return 0;
  }
  const slot = slotAddr(t, idx);
  memory.fill(slot, 0, t.valueSize);
  memory.copy(slot + t.valueSize, key, <usize>t.keyWords << 3);
  const bucket = bucketOf(t, key);
  store<u32>(chainOf(t, idx), load<u32>(bucket));
  store<u32>(bucket, idx);
  store<u32>(metaOf(t, idx), META_USED);
  t.count++;
  if (isTagged(t, key)) t.tagged++;
  return idx;
}

/** Removes the entry in slot `idx`. */
export function tableRemove(t: Table, idx: u32): void {
  let link = bucketOf(t, keyAddr(t, idx));
  let cur = load<u32>(link);
  while (cur != 0 && cur != idx) {
    link = chainOf(t, cur);
    cur = load<u32>(link);
  }
  if (cur == 0) return; // not linked: nothing to remove
  store<u32>(link, load<u32>(chainOf(t, idx)));
  store<u32>(chainOf(t, idx), t.freeHead);
  store<u32>(metaOf(t, idx), 0);
  t.freeHead = idx;
  t.count--;
  if (isTagged(t, keyAddr(t, idx))) t.tagged--;
}

/** Whether slot `idx` (1..highWater) holds an entry. */
export function tableSlotUsed(t: Table, idx: u32): bool {
  return idx < t.nextFresh && (load<u32>(metaOf(t, idx)) & META_USED) != 0;
}

/** One past the highest slot ever used: scans stop here. */
export function tableHighWater(t: Table): u32 {
  return t.nextFresh;
}

/** Records written by the last tableDump. */

/** Empties the table. */
export function tableFlush(t: Table): void {
  memory.fill(t.buckets, 0, (<usize>t.bucketMask + 1) << 2);
  t.count = 0;
  t.freeHead = 0;
  t.nextFresh = 1;
  t.hand = 1;
  t.tagged = 0;
}
