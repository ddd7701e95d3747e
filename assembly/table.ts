// A fixed-capacity hash table in linear memory: the shape behind every datapath
// table. Slots live in one array sized at init (capacity is exact, no load
// factor to pay for), chained from a power-of-two bucket array, and threaded on
// an intrusive doubly linked LRU list so the least recently used entry can be
// found in O(1). Slot layout: [value][key padded to 8][chain][lru prev][lru next].
// Slot indices are 1-based; 0 means none.
import { hashWords } from "./hash";
import { regionAlloc } from "./region";

// lruNext of a slot that is not in use, so scans can tell used from free.
// @ts-ignore: decorator
@inline const FREE: u32 = 0xFFFFFFFF;

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
  lruHead: u32 = 0;       // most recently used
  lruTail: u32 = 0;       // least recently used
  seed: u64 = 0;
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
  const slotSize = (linkOff + 12 + 7) & ~7;
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
  t.lruHead = 0;
  t.lruTail = 0;
  t.seed = seed;
  return t;
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
@inline function prevOf(t: Table, idx: u32): usize { return slotAddr(t, idx) + t.linkOff + 4; }
// @ts-ignore: decorator
@inline function nextOf(t: Table, idx: u32): usize { return slotAddr(t, idx) + t.linkOff + 8; }

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

function lruUnlink(t: Table, idx: u32): void {
  const prev = load<u32>(prevOf(t, idx));
  const next = load<u32>(nextOf(t, idx));
  if (prev != 0) store<u32>(nextOf(t, prev), next); else t.lruHead = next;
  if (next != 0) store<u32>(prevOf(t, next), prev); else t.lruTail = prev;
}

function lruPushHead(t: Table, idx: u32): void {
  store<u32>(prevOf(t, idx), 0);
  store<u32>(nextOf(t, idx), t.lruHead);
  if (t.lruHead != 0) store<u32>(prevOf(t, t.lruHead), idx); else t.lruTail = idx;
  t.lruHead = idx;
}

/** Marks a slot most recently used. */
export function tableTouch(t: Table, idx: u32): void {
  if (t.lruHead == idx) return;
  lruUnlink(t, idx);
  lruPushHead(t, idx);
}

/** Least recently used slot, 0 when empty. */
export function tableOldest(t: Table): u32 {
  return t.lruTail;
}

/**
 * Inserts `key` (which must be absent) with a zeroed value; returns the slot, or
 * 0 when every slot is in use. The new slot is the most recently used.
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
  lruPushHead(t, idx);
  t.count++;
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
  lruUnlink(t, idx);
  store<u32>(chainOf(t, idx), t.freeHead);
  store<u32>(nextOf(t, idx), FREE);
  t.freeHead = idx;
  t.count--;
}

/** Whether slot `idx` (1..highWater) holds an entry. */
export function tableSlotUsed(t: Table, idx: u32): bool {
  return idx < t.nextFresh && load<u32>(nextOf(t, idx)) != FREE;
}

/** One past the highest slot ever used: scans stop here. */
export function tableHighWater(t: Table): u32 {
  return t.nextFresh;
}

/** Empties the table. */
export function tableFlush(t: Table): void {
  memory.fill(t.buckets, 0, (<usize>t.bucketMask + 1) << 2);
  t.count = 0;
  t.freeHead = 0;
  t.nextFresh = 1;
  t.lruHead = 0;
  t.lruTail = 0;
}
