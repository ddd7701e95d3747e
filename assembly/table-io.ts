// Whole-record access to a table for the host: records are key bytes then value
// bytes, as the kernel's map dumps give them, so both datapaths can be written
// and compared through the same encodings.
import { Table, keyAddr, slotAddr, tableHighWater, tableInsert, tableLookup, tableRemove, tableSlotUsed } from "./table";

// Zero-padded copy of a host-supplied key: table keys are compared in 8-byte words.
const paddedKey = memory.data(48, 16);

/** How many records the last tableDumpRecords wrote. */
export let dumpCount: u32 = 0;

/** An empty dump (a bad table id). */
export function dumpNothing(): u32 {
  dumpCount = 0;
  return 0;
}

/**
 * Copies up to `max` records of `t` into `out`, starting at slot `cursor` (1 to
 * begin). Returns the cursor to continue from, 0 when the scan is complete.
 */
export function tableDumpRecords(t: Table, cursor: u32, out: usize, max: u32): u32 {
  dumpCount = 0;
  if (cursor == 0) return 0;
  const rec = <usize>(t.keySize + t.valueSize);
  const end = tableHighWater(t);
  let idx = cursor;
  for (; idx < end && dumpCount < max; idx++) {
    if (!tableSlotUsed(t, idx)) continue;
    const o = out + <usize>dumpCount * rec;
    memory.copy(o, keyAddr(t, idx), t.keySize);
    memory.copy(o + t.keySize, slotAddr(t, idx), t.valueSize);
    dumpCount++;
  }
  return idx < end ? idx : 0;
}

/** The key at `key` (t.keySize bytes), zero-padded for lookups. */
export function padKey(t: Table, key: usize): usize {
  memory.fill(paddedKey, 0, 48);
  memory.copy(paddedKey, key, t.keySize);
  return paddedKey;
}

/** Stores one record (key then value), replacing the entry with its key; false when the table is full. */
export function tableUpsertRecord(t: Table, record: usize): bool {
  const key = padKey(t, record);
  let idx = tableLookup(t, key);
  if (idx == 0) idx = tableInsert(t, key);
  if (idx == 0) return false;
  memory.copy(slotAddr(t, idx), record + t.keySize, t.valueSize);
  return true;
}

/**
 * Stores `count` records (layout as tableDumpRecords) from `records`, replacing
 * entries with the same key. Returns how many were stored (fewer when full).
 */
export function tableRestoreRecords(t: Table, records: usize, count: u32): u32 {
  const rec = <usize>(t.keySize + t.valueSize);
  let stored: u32 = 0;
  for (let i: u32 = 0; i < count; i++) {
    if (!tableUpsertRecord(t, records + <usize>i * rec)) break;
    stored++;
  }
  return stored;
}

/** Deletes the entry whose key is at `key`; whether it existed. */
export function tableDeleteKey(t: Table, key: usize): bool {
  const idx = tableLookup(t, padKey(t, key));
  if (idx == 0) return false;
  tableRemove(t, idx);
  return true;
}
