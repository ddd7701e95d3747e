/**
 * `membrane replay <capture>`: runs every packet of a capture through the
 * datapath with the capture's timestamps as the clock, prints one line per
 * packet, then the conntrack table and the counters; `--out` writes the packets
 * that pass, as rewritten.
 */
import { printNat } from "./bpf-nat.js";
import { readFileSync, writeFileSync } from "node:fs";
import { Datapath } from "../datapath.js";
import { InvalidInputError } from "../errors.js";
import { resolveOptions, type ResolvedOptions } from "../config.js";
import { loadState } from "../state/file.js";
import { datapathState, type DatapathState } from "../state/schema.js";
import { programDatapath } from "../state/program.js";
import { CaptureError, LinkType, PcapWriter, readCapture, type CapturePacket } from "../pcap/index.js";
import { describePacket } from "../packet/decode.js";
import type { Direction, LinkKind } from "../batch.js";
import { GcSchedule } from "../conntrack/gc-schedule.js";
import { toJson } from "./table.js";
import type { Output } from "./output.js";
import type { PacketVerdict } from "../verdict.js";
import type { DatapathEngine, EngineName } from "../engine.js";
import { KernelDatapath } from "../kernel/datapath.js";
import { NotSupportedError } from "../errors.js";
import { ctJson, ctTableLines, countersText } from "./ct-format.js";
import { readLbListing } from "../lb/listing.js";
import { formatLbListing, lbListingJson } from "./lb.js";
import { Command } from "commander";
import { dirname, resolve } from "node:path";
import { statSync } from "node:fs";
import { choiceArg, example, jsonOption, outputOf } from "./command.js";

export interface ReplayOptions {
  input: string;
  /** wasm (default) or bpf: the kernel program through BPF_PROG_TEST_RUN. */
  engine: EngineName;
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
  /** Frames the engine cannot run (the kernel refuses runts and over-page frames). */
  skipped: number;
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

/** `--out` must name a file in a directory that exists: checked before the replay runs, not after it. */
function checkOutPath(out: string): void {
  const dir = dirname(resolve(out));
  let isDir = false;
  try { isDir = statSync(dir).isDirectory(); } catch { /* refused below */ }
  if (!isDir) throw new InvalidInputError(`--out ${out}: directory ${dir} does not exist`);
  try {
    if (statSync(out).isDirectory()) throw new InvalidInputError(`--out ${out}: is a directory; give a file name`);
  } catch (err) {
    if (err instanceof InvalidInputError) throw err;
  }
}

export async function replay(opts: ReplayOptions, io: Output): Promise<ReplaySummary> {
  if (opts.out) checkOutPath(opts.out);
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
  const loaded = opts.config ? loadState(opts.config) : undefined;
  const state: DatapathState = loaded ? datapathState(loaded) : { options: resolveOptions({}) };
  const { options } = state;
  const services = state.services ?? [];
  const outLink = packets[0]?.linkType;
  if (opts.out && packets.some((p) => p.linkType !== outLink)) {
    throw new InvalidInputError(`--out ${opts.out}: the capture mixes link types; a pcap file holds one`);
  }

  const dp: DatapathEngine = opts.engine === "bpf" ? await KernelDatapath.create(options) : await Datapath.create(options);
  try {
    for (const w of [...(loaded?.warnings ?? []), ...programDatapath(dp, state)]) io.err(`membrane replay: ${w}`);
    return await replayThrough(dp, packets, options, { ...opts, listLb: services.length > 0 }, io);
  } finally {
    dp.close();
  }
}

/** One verdict per packet, or why the engine could not run it. */
function decideGroup(dp: DatapathEngine, group: CapturePacket[], now: number, direction: Direction): (PacketVerdict | string)[] {
  const inputs = group.map((p) => ({ ...datapathInput(p), direction }));
  if (dp.engine === "wasm") return dp.decideAll(inputs, now);
  return inputs.map((input) => {
    try {
      return dp.decide(input.data, { link: input.link, direction, now });
    } catch (err) {
      if (err instanceof NotSupportedError) return err.message;
      throw err;
    }
  });
}

async function replayThrough(dp: DatapathEngine, packets: CapturePacket[], options: ResolvedOptions, opts: ReplayOptions & { listLb: boolean }, io: Output): Promise<ReplaySummary> {
  const outLink = packets[0]?.linkType;
  const writer = opts.out && outLink !== undefined ? new PcapWriter(outLink) : undefined;
  const schedule = new GcSchedule({ mode: opts.gc === "fixed" ? "fixed" : "adaptive", lru: options.conntrack.whenFull === "evict-lru" });
  const start = packets[0]?.timestampNs ?? 0n;
  let nextGc = seconds(start) + schedule.interval;
  const summary: ReplaySummary = { packets: packets.length, passed: 0, dropped: 0, skipped: 0, written: 0 };
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
    const first = i;
    while (i < packets.length && i - first < BATCH && seconds(packets[i].timestampNs) === now) i++;
    const group = packets.slice(first, i);
    const verdicts = decideGroup(dp, group, now, opts.direction);
    lastNow = now;
    for (let k = 0; k < group.length; k++) {
      const p = group[k];
      const v = verdicts[k];
      if (typeof v === "string") {
        summary.skipped++;
        if (!opts.summaryOnly) io.out(skippedLine(p, v, start, opts.json));
        continue;
      }
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

  // Kernel maps iterate in hash order: sort so both engines print comparably.
  const records = [...dp.conntrack()].sort((a, b) => a.table.localeCompare(b.table) || Buffer.compare(a.key, b.key));
  const counters = dp.counters();
  if (opts.json) {
    for (const r of records) io.out(toJson({ type: "conntrack", ...ctJson(r, lastNow) }));
    if (options.nat) printNat(dp.nat, true, io);
    if (opts.listLb) lbListingJson(readLbListing(dp.lbTables())).forEach((l) => io.out(l));
    io.out(toJson({ type: "counters", ...counters }));
    io.out(toJson({ type: "summary", ...summary }));
  } else {
    io.out("");
    io.out(`Conntrack (${records.length} entries, clock ${lastNow}):`);
    if (records.length) for (const line of ctTableLines(records, lastNow)) io.out(line);
    else io.out("(empty)");
    if (options.nat) { io.out(""); printNat(dp.nat, false, io); }
    io.out("");
    if (opts.listLb) io.out(formatLbListing(readLbListing(dp.lbTables()), dp.engine === "wasm" ? "Wasm" : "Kernel") + "\n");
    io.out(countersText(counters));
    io.out("");
    const skipped = summary.skipped ? `, ${summary.skipped} not run by the ${dp.engine} engine` : "";
    io.out(`${summary.packets} packets: ${summary.passed} passed, ${summary.dropped} dropped${skipped}${opts.out ? `; ${summary.written} written to ${opts.out}` : ""}`);
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

function skippedLine(p: CapturePacket, why: string, start: bigint, json: boolean): string {
  const time = Number(p.timestampNs - start) / 1e9;
  if (json) return toJson({ type: "packet", index: p.index + 1, time, packet: describePacket(datapathInput(p).data, datapathInput(p).link), verdict: "not-run", reason: why });
  return `${String(p.index + 1).padStart(W.index)}  ${time.toFixed(6).padStart(W.time)}  not run: ${why}`;
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


/** `membrane replay <capture> [options]` */
export function registerReplay(program: Command): void {
  const cmd = program.command("replay")
    .description("run a pcap/pcapng capture through the datapath, on the capture's clock: a line per packet, then the conntrack table and the counters")
    .argument("[capture]", "the pcap or pcapng file")
    .usage("<capture> [options]")
    .option("--out <file>", "write the packets that pass, as rewritten, to a pcap file")
    .option("--config <file>", "state file (JSON): datapath options (conntrack, nat, lb, policy sizes), services, endpoints and policies")
    .option("--direction <d>", "auto (default), egress or ingress: the packets' direction")
    .option("--gc <mode>", "adaptive (default), fixed or off: conntrack GC on the capture clock")
    .option("--summary", "no per-packet lines, only the tables and counters", false)
    .option("--engine <e>", "wasm (default) or bpf: the kernel program via BPF_PROG_TEST_RUN (root)");
  jsonOption(cmd);
  example(cmd, "membrane replay examples/sample.pcap --summary", "membrane replay capture.pcap --config state.json --out passed.pcap --json");
  cmd.action(async (capture: string | undefined, o: { json: boolean; out?: string; config?: string; direction?: string; gc?: string; summary: boolean; engine?: string }, self: Command) => {
    const n = capture === undefined ? 0 : 1;
    if (n !== 1) throw new InvalidInputError(`replay: expected one capture file, got ${n}`);
    await replay({
      input: capture!, json: o.json, out: o.out, config: o.config,
      engine: choiceArg("engine", o.engine, ["wasm", "bpf"] as const, "wasm"),
      direction: choiceArg("direction", o.direction, ["auto", "egress", "ingress"] as const, "auto"),
      gc: choiceArg("gc", o.gc, ["adaptive", "fixed", "off"] as const, "adaptive"),
      summaryOnly: o.summary,
    }, outputOf(self));
  });
}
