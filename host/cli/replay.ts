/**
 * `membrane replay <capture>`: runs every packet of a capture through the
 * datapath with the capture's timestamps as the clock, prints one line per
 * packet, then the conntrack table and the counters; `--out` writes the packets
 * that pass, as rewritten.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { Datapath } from "../datapath.js";
import { InvalidInputError } from "../errors.js";
import { resolveOptions, type ResolvedOptions } from "../config.js";
import { CaptureError, LinkType, PcapWriter, readCapture, type CapturePacket } from "../pcap/index.js";
import { describePacket } from "../packet/decode.js";
import type { Direction, LinkKind } from "../batch.js";
import { GcSchedule } from "../conntrack/gc-schedule.js";
import { loadStateFile } from "./state-file.js";
import { renderTable, toJson } from "./table.js";
import type { Output } from "./output.js";
import { formatEntryFlags, formatTcpFlags, formatTuple, formatTupleFlags, PROTO_NAMES, type CtRecord } from "../conntrack/records.js";
import type { PacketVerdict } from "../verdict.js";
import type { DatapathCounters } from "../datapath.js";

export interface ReplayOptions {
  input: string;
  json: boolean;
  out?: string;
  config?: string;
  direction: Direction;
  gc: "adaptive" | "fixed" | "off";
  /** Print no per-packet lines (tables and counters only). */
  summaryOnly: boolean;
}

export interface ReplaySummary {
  packets: number;
  passed: number;
  dropped: number;
  written: number;
}

const BATCH = 256;
const LINUX_SLL_HEADER = 16;

/** What the datapath is given for a captured packet: its link kind and the bytes from that link on. */
function datapathInput(p: CapturePacket): { link: LinkKind; data: Uint8Array } {
  switch (p.linkType) {
    case LinkType.Ethernet: return { link: "ethernet", data: p.data };
    case LinkType.LinuxSll: return { link: "ip", data: p.data.subarray(Math.min(LINUX_SLL_HEADER, p.data.length)) };
    default: return { link: "ip", data: p.data };
  }
}

function seconds(ns: bigint): number {
  return Number(ns / 1_000_000_000n);
}

export async function replay(opts: ReplayOptions, io: Output): Promise<ReplaySummary> {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(opts.input);
  } catch (err) {
    throw new InvalidInputError(`read capture ${opts.input}: ${(err as Error).message}`, { cause: err });
  }
  let packets: CapturePacket[];
  try {
    packets = readCapture(bytes).packets;
  } catch (err) {
    if (err instanceof CaptureError) throw new InvalidInputError(`read capture ${opts.input}: ${err.message}`, { cause: err });
    throw err;
  }
  const options: ResolvedOptions = opts.config ? loadStateFile(opts.config) : resolveOptions({});
  const outLink = packets[0]?.linkType;
  if (opts.out && packets.some((p) => p.linkType !== outLink)) {
    throw new InvalidInputError(`--out ${opts.out}: the capture mixes link types; a pcap file holds one`);
  }

  const dp = await Datapath.create(options);
  const maxLen = packets.reduce((m, p) => Math.max(m, p.data.length), 0);
  const batch = dp.createBatch(BATCH, { bufferSize: Math.max(2048, maxLen) + 128 });
  const writer = opts.out && outLink !== undefined ? new PcapWriter(outLink) : undefined;
  const schedule = new GcSchedule({ mode: opts.gc === "fixed" ? "fixed" : "adaptive", lru: options.conntrack.whenFull === "evict-lru" });
  const start = packets[0]?.timestampNs ?? 0n;
  let nextGc = seconds(start) + schedule.interval;
  const summary: ReplaySummary = { packets: packets.length, passed: 0, dropped: 0, written: 0 };
  const progress = process.stderr.isTTY && !opts.json && packets.length > 100_000;
  let lastNow = seconds(start);

  if (!opts.json && !opts.summaryOnly) io.out(packetHeader());
  for (let i = 0; i < packets.length;) {
    // One batch shares one clock value: cut it where the capture's second changes.
    const now = seconds(packets[i].timestampNs);
    if (opts.gc !== "off" && now >= nextGc) {
      const results = dp.gc(now);
      const deleted = results.reduce((s, r) => s + r.deleted, 0);
      const ratio = Math.max(...results.map((r) => (r.scanned ? r.deleted / r.scanned : 0)));
      const interval = schedule.next(results.some((r) => r.scanned) ? ratio : NaN);
      nextGc = now + interval;
      if (opts.json) io.out(toJson({ type: "gc", now, deleted, scanned: results.reduce((s, r) => s + r.scanned, 0), nextInSeconds: interval }));
      else if (!opts.summaryOnly) io.out(`-- conntrack GC at ${now}: ${deleted} expired entries deleted; next in ${interval} s`);
    }
    batch.clear();
    const first = i;
    while (i < packets.length && batch.length < BATCH && seconds(packets[i].timestampNs) === now) {
      const { link, data } = datapathInput(packets[i]);
      batch.push(data, { link, direction: opts.direction });
      i++;
    }
    dp.process(batch, now);
    lastNow = now;
    for (let k = 0; k < batch.length; k++) {
      const p = packets[first + k];
      const v = batch.result(k);
      if (v.verdict === "pass") summary.passed++; else summary.dropped++;
      if (writer && v.verdict === "pass") {
        const headerLen = p.linkType === LinkType.LinuxSll ? Math.min(LINUX_SLL_HEADER, p.data.length) : 0;
        writer.add(p.timestampNs, headerLen ? concat(p.data.subarray(0, headerLen), v.data) : v.data);
        summary.written++;
      }
      if (!opts.summaryOnly) io.out(packetLine(p, v, start, opts.json));
    }
    if (progress && (i % 65536) < BATCH) process.stderr.write(`\rreplayed ${i}/${packets.length} packets`);
  }
  if (progress) process.stderr.write("\n");
  if (writer && opts.out) writeFileSync(opts.out, writer.toBytes());

  const records = [...dp.conntrack()];
  const counters = dp.counters();
  if (opts.json) {
    for (const r of records) io.out(toJson({ type: "conntrack", ...ctJson(r, lastNow) }));
    io.out(toJson({ type: "counters", ...counters }));
    io.out(toJson({ type: "summary", ...summary }));
  } else {
    io.out("");
    io.out(`Conntrack (${records.length} entries, clock ${lastNow}):`);
    io.out(records.length ? ctTable(records, lastNow) : "(empty)");
    io.out("");
    io.out(countersText(counters));
    io.out("");
    io.out(`${summary.packets} packets: ${summary.passed} passed, ${summary.dropped} dropped${opts.out ? `; ${summary.written} written to ${opts.out}` : ""}`);
  }
  return summary;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

const W = { index: 6, time: 11, packet: 58, dir: 7, ct: 11, verdict: 7 };

function packetHeader(): string {
  return ["#".padStart(W.index), "TIME".padStart(W.time), "PACKET".padEnd(W.packet), "DIR".padEnd(W.dir), "CT".padEnd(W.ct), "VERDICT".padEnd(W.verdict), "REASON"].join("  ").trimEnd();
}

function packetLine(p: CapturePacket, v: PacketVerdict, start: bigint, json: boolean): string {
  const { link, data } = datapathInput(p);
  const time = Number(p.timestampNs - start) / 1e9;
  const packet = describePacket(data, link);
  if (json) {
    return toJson({
      type: "packet", index: p.index + 1, time, packet, verdict: v.verdict, direction: v.direction, ct: v.ct,
      ctTable: v.ctTable, dropReason: v.dropReason, dropCode: v.dropReason ? v.dropCode : undefined, dropText: v.dropText,
    });
  }
  return [
    String(p.index + 1).padStart(W.index), time.toFixed(6).padStart(W.time), packet.padEnd(W.packet),
    v.direction.padEnd(W.dir), v.ct.padEnd(W.ct), v.verdict.padEnd(W.verdict), v.dropReason ?? "",
  ].join("  ").trimEnd();
}

function ctJson(r: CtRecord, now: number) {
  return {
    table: r.table, family: r.tuple.family, src: r.tuple.src, dst: r.tuple.dst, sport: r.tuple.sport, dport: r.tuple.dport,
    proto: r.tuple.proto, createdBy: formatTupleFlags(r.tuple.flags).toLowerCase(), ...r.entry,
    expiresIn: r.entry.lifetime - now,
  };
}

/** The conntrack table as people read it; shared by replay and `membrane ct list`. */
export function ctTable(records: CtRecord[], now: number): string {
  return renderTable<CtRecord>([
    { header: "TABLE", value: (r) => r.table },
    { header: "BY", value: (r) => formatTupleFlags(r.tuple.flags) },
    { header: "PROTO", value: (r) => PROTO_NAMES[r.tuple.proto] ?? String(r.tuple.proto) },
    { header: "FLOW", value: (r) => formatTuple(r.tuple) },
    { header: "TX PKTS", value: (r) => r.entry.txPackets },
    { header: "TX BYTES", value: (r) => r.entry.txBytes },
    { header: "RX PKTS", value: (r) => r.entry.rxPackets },
    { header: "RX BYTES", value: (r) => r.entry.rxBytes },
    { header: "TCP TX/RX", value: (r) => (r.tuple.proto === 6 ? `${formatTcpFlags(r.entry.txFlagsSeen)}/${formatTcpFlags(r.entry.rxFlagsSeen)}` : "") },
    { header: "STATE", value: (r) => formatEntryFlags(r.entry.flags) },
    { header: "EXPIRES", value: (r) => `${r.entry.lifetime - now}s`, right: true },
  ], records);
}

export function countersText(c: DatapathCounters): string {
  const lines = [
    `Forwarded: egress ${c.forwarded.egress.packets} packets / ${c.forwarded.egress.bytes} bytes, ingress ${c.forwarded.ingress.packets} packets / ${c.forwarded.ingress.bytes} bytes`,
  ];
  if (c.drops.length) {
    lines.push("Drops:");
    lines.push(renderTable([
      { header: "REASON", value: (d: DatapathCounters["drops"][number]) => d.reason },
      { header: "DIR", value: (d) => d.direction },
      { header: "PACKETS", value: (d) => d.packets },
      { header: "BYTES", value: (d) => d.bytes },
      { header: "MEANING", value: (d) => d.text },
    ], c.drops));
  } else {
    lines.push("Drops: none");
  }
  lines.push("Tables:");
  lines.push(renderTable([
    { header: "TABLE", value: (t: [string, DatapathCounters["tables"]["tcp4"]]) => t[0] },
    { header: "ENTRIES", value: (t) => t[1].entries },
    { header: "CREATED", value: (t) => t[1].created },
    { header: "EVICTED", value: (t) => t[1].evicted },
    { header: "FULL DROPS", value: (t) => t[1].createFailed },
    { header: "GC DELETED", value: (t) => t[1].gcDeleted },
    { header: "GC RUNS", value: (t) => t[1].gcRuns },
  ], Object.entries(c.tables)));
  return lines.join("\n");
}
