/**
 * `membrane bpf ct list`: the kernel's conntrack maps, read from their pins,
 * as a table or JSON. Lifetimes are on the kernel's monotonic clock, which is
 * what Node's hrtime reads on Linux.
 */
import { join } from "node:path";
import { existsSync } from "node:fs";
import { BpfMap } from "../bpf/map.js";
import { pinDir as defaultPinDir } from "../bpf/bpffs.js";
import { CT_TABLES, decodeCtRecord, joinRecord, type CtRecord, type CtTableName } from "../conntrack/records.js";
import { InvalidInputError } from "../errors.js";
import type { Output } from "./output.js";
import { ctJson, ctTableLines } from "./ct-format.js";
import { toJson } from "./table.js";
import { Command } from "commander";
import { example, jsonOption, outputOf, refuseOtherVerbs } from "./command.js";

export interface BpfCtListOptions {
  pinDir?: string;
  table?: string;
  json: boolean;
}

export function monotonicSeconds(): number {
  return Number(process.hrtime.bigint() / 1_000_000_000n);
}

export function readPinnedConntrack(dir: string, tables: readonly CtTableName[]): CtRecord[] {
  const records: CtRecord[] = [];
  for (const table of tables) {
    const path = join(dir, `ct_${table}`);
    if (!existsSync(path)) throw new InvalidInputError(`read ${path}: no pinned conntrack map there (is the kernel datapath attached with pinning to ${dir}?)`);
    const map = BpfMap.openPinned(path);
    try {
      for (const [key, value] of map.dump()) records.push(decodeCtRecord(table, joinRecord(key, value)));
    } finally {
      map.close();
    }
  }
  return records;
}

export function bpfCtList(opts: BpfCtListOptions, io: Output): void {
  if (opts.table !== undefined && !CT_TABLES.includes(opts.table as CtTableName)) {
    throw new InvalidInputError(`--table: expected one of ${CT_TABLES.join(", ")}, got "${opts.table}"`);
  }
  const dir = opts.pinDir ?? defaultPinDir();
  const tables = opts.table ? [opts.table as CtTableName] : CT_TABLES;
  const records = readPinnedConntrack(dir, tables);
  const now = monotonicSeconds();
  if (opts.json) {
    for (const r of records) io.out(toJson(ctJson(r, now)));
    return;
  }
  io.out(`Kernel conntrack in ${dir} (${records.length} entries, monotonic clock ${now}):`);
  if (records.length) for (const line of ctTableLines(records, now)) io.out(line);
  else io.out("(empty)");
}

/** `membrane bpf ct list [--pin-dir D] [--table T] [--json]` */
export function registerBpfCt(bpf: Command): void {
  const ct = bpf.command("ct").description("the kernel's conntrack maps (pinned)");
  refuseOtherVerbs(ct, (got) => `bpf: expected "bpf ct list", "bpf nat list|flush", "bpf lb list", "bpf policy get" or "bpf endpoint list", got "bpf ct${got.length ? " " + got[0] : ""}"`);
  example(ct, "membrane bpf ct list --table tcp4");
  const list = ct.command("list")
    .description("the conntrack entries: flow, packets and bytes each way, TCP flags, state, time to expiry (on the kernel's monotonic clock)")
    .option("--pin-dir <dir>", "where the maps are pinned (default /sys/fs/bpf/membrane, or $MEMBRANE_BPFFS)")
    .option("--table <t>", "tcp4, any4, tcp6 or any6 (default: all)");
  jsonOption(list, "JSON lines, one entry each");
  example(list, "membrane bpf ct list", "membrane bpf ct list --pin-dir /sys/fs/bpf/membrane --table any6 --json");
  list.action((o: { pinDir?: string; table?: string; json: boolean }, self: Command) => {
    bpfCtList({ pinDir: o.pinDir, table: o.table, json: o.json }, outputOf(self));
  });
}
