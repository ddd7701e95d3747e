/**
 * The differential harness: the same packets through the Wasm core and the
 * kernel program (BPF_PROG_TEST_RUN), compared after every packet (verdict,
 * drop reason, conntrack result, direction, table, output bytes) and at
 * checkpoints (every conntrack and fragment table, record by record, field by
 * field). The first divergence is reported with both sides decoded.
 */
import { Datapath } from "../../host/datapath.js";
import { KernelDatapath, testRunRefuses } from "../../host/kernel/datapath.js";
import type { DatapathOptions } from "../../host/config.js";
import type { PacketVerdict } from "../../host/verdict.js";
import type { Direction, LinkKind } from "../../host/wasm/batch.js";
import { describePacket } from "../../host/packet/decode.js";
import { formatIp } from "../../host/packet/address.js";
import { TABLE_NAMES, type TableName } from "../../host/wasm/core.js";
import {
  CT_TUPLE4, CT_TUPLE6, FRAG_KEY4, FRAG_KEY6, decodeCtEntry, decodeCtTuple4, decodeCtTuple6, decodeFragEntry,
  decodeFragKey4, decodeFragKey6,
} from "../../host/generated/layout.js";

export interface Pair {
  wasm: Datapath;
  kernel: KernelDatapath;
  close(): void;
}

export async function createPair(options: DatapathOptions): Promise<Pair> {
  const wasm = await Datapath.create(options);
  const kernel = await KernelDatapath.create(options);
  return { wasm, kernel, close: () => kernel.close() };
}

export type DiffEvent =
  | { kind: "packet"; frame: Uint8Array; link?: LinkKind; direction: Direction; now: number; note: string }
  | { kind: "gc"; now: number };

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

function verdictSummary(v: PacketVerdict) {
  return { verdict: v.verdict, dropReason: v.dropReason, ct: v.ct, direction: v.direction, ctTable: v.ctTable, data: hex(v.data) };
}

/** Decodes one table record (key + value) into plain fields for printing and comparing. */
export function decodeRecord(table: TableName, record: Uint8Array): Record<string, unknown> {
  const key = table === "tcp4" || table === "any4" ? decodeCtTuple4(record)
    : table === "tcp6" || table === "any6" ? decodeCtTuple6(record)
    : table === "frag4" ? decodeFragKey4(record) : decodeFragKey6(record);
  const keySize = { tcp4: CT_TUPLE4.size, any4: CT_TUPLE4.size, tcp6: CT_TUPLE6.size, any6: CT_TUPLE6.size, frag4: FRAG_KEY4.size, frag6: FRAG_KEY6.size }[table];
  const value = table.startsWith("frag") ? decodeFragEntry(record, keySize) : decodeCtEntry(record, keySize);
  const show = (k: string, v: unknown) => {
    if (v instanceof Uint8Array) return k.endsWith("addr") ? formatIp(v) : hex(v);
    if (typeof v === "number" && k.endsWith("addr")) return formatIp(Uint8Array.of(v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255));
    return typeof v === "bigint" ? Number(v) : v;
  };
  const plain = (o: object) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, show(k, v)]));
  return { ...plain(key), ...plain(value) };
}

/** The first difference between the two datapaths' tables, or undefined. */
export function compareTables(pair: Pair): string | undefined {
  for (const table of TABLE_NAMES) {
    const sorted = (records: Uint8Array[]) => records.map(hex).sort();
    const w = sorted(pair.wasm.dumpTable(table));
    const k = sorted(pair.kernel.dumpTable(table));
    const keyLen = table.endsWith("4") ? (table === "frag4" ? FRAG_KEY4.size : CT_TUPLE4.size) * 2 : (table === "frag6" ? FRAG_KEY6.size : CT_TUPLE6.size) * 2;
    const kKeys = new Map(k.map((r) => [r.slice(0, keyLen), r]));
    const wKeys = new Map(w.map((r) => [r.slice(0, keyLen), r]));
    for (const [key, rec] of wKeys) {
      const other = kKeys.get(key);
      const wDec = decodeRecord(table, Buffer.from(rec, "hex"));
      if (!other) return `${table}: entry only in Wasm: ${JSON.stringify(wDec)}`;
      if (other !== rec) {
        const kDec = decodeRecord(table, Buffer.from(other, "hex"));
        const fields = Object.keys(wDec).filter((f) => wDec[f] !== kDec[f]);
        return `${table}: entry ${JSON.stringify(wDec)} differs in ${fields.map((f) => `${f} (wasm ${wDec[f]}, kernel ${kDec[f]})`).join(", ")}`;
      }
    }
    for (const [key, rec] of kKeys) {
      if (!wKeys.has(key)) return `${table}: entry only in the kernel: ${JSON.stringify(decodeRecord(table, Buffer.from(rec, "hex")))}`;
    }
  }
  return undefined;
}

export interface DiffResult {
  packets: number;
  /** Frames the kernel's test run refuses (see testRunRefuses), sent to neither side. */
  refused: number;
  divergence?: string;
}

/** One packet through both datapaths: the Wasm verdict, and how the kernel's differs (if it does). */
export function decideBoth(pair: Pair, e: Extract<DiffEvent, { kind: "packet" }>, index: number): { wasm: PacketVerdict; divergence?: string } {
  const meta = { link: e.link ?? "ethernet", direction: e.direction, now: e.now };
  const wasm = pair.wasm.decide(e.frame, meta);
  const w = verdictSummary(wasm);
  const k = verdictSummary(pair.kernel.decide(e.frame, meta));
  const fields = (Object.keys(w) as (keyof typeof w)[]).filter((f) => w[f] !== k[f]);
  if (!fields.length) return { wasm };
  return {
    wasm,
    divergence: [
      `event ${index} (${e.note}, direction ${e.direction}, now ${e.now}): ${describePacket(e.frame, meta.link)}`,
      `  differs in ${fields.join(", ")}`,
      `  wasm:   ${JSON.stringify(w)}`,
      `  kernel: ${JSON.stringify(k)}`,
      `  frame:  ${hex(e.frame)}`,
    ].join("\n"),
  };
}

/** Runs `events` through both datapaths; stops at the first divergence. */
export function runDifferential(pair: Pair, events: Iterable<DiffEvent>, checkpointEvery = 500): DiffResult {
  let packets = 0;
  let refused = 0;
  let index = 0;
  for (const e of events) {
    index++;
    if (e.kind === "gc") {
      const w = pair.wasm.gc(e.now).map((r) => `${r.table}:${r.deleted}/${r.scanned}`).join(" ");
      const k = pair.kernel.gc(e.now).map((r) => `${r.table}:${r.deleted}/${r.scanned}`).join(" ");
      if (w !== k) return { packets, refused, divergence: `event ${index} (GC at ${e.now}): Wasm ${w}; kernel ${k}` };
      continue;
    }
    if (testRunRefuses(e.frame)) {
      refused++;
      continue;
    }
    packets++;
    const divergence = decideBoth(pair, e, index).divergence;
    if (divergence) return { packets, refused, divergence };
    if (packets % checkpointEvery === 0) {
      const t = compareTables(pair);
      if (t) return { packets, refused, divergence: `after event ${index} (${e.note}): ${t}` };
    }
  }
  const t = compareTables(pair);
  if (t) return { packets, refused, divergence: `at the end: ${t}` };
  const cw = pair.wasm.counters(), ck = pair.kernel.counters();
  const counts = (c: typeof cw) => JSON.stringify({ forwarded: c.forwarded, drops: c.drops, created: Object.fromEntries(Object.entries(c.tables).map(([n, s]) => [n, [Number(s.created), Number(s.createFailed), Number(s.entries)]])) });
  if (counts(cw) !== counts(ck)) return { packets, refused, divergence: `counters differ:\n  wasm:   ${counts(cw)}\n  kernel: ${counts(ck)}` };
  return { packets, refused };
}
