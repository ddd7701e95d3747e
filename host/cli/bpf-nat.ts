/**
 * `membrane bpf nat list` and `membrane bpf nat flush`: the kernel datapath's
 * NAT maps, read from their pins; and the NAT table as printed for any engine
 * (replay prints the Wasm or kernel one after a run).
 */
import { parseArgs } from "node:util";
import { pinDir as defaultPinDir } from "../bpf/bpffs.js";
import { InvalidInputError } from "../errors.js";
import { NAT_TABLES, type NatTableName } from "../nat/records.js";
import type { NatTables } from "../nat/tables.js";
import { flushPinnedNat, readPinnedNat } from "../kernel/pinned-nat.js";
import { natJson, natTable } from "../format/nat.js";
import type { Output } from "../format/output.js";
import { toJson } from "../format/table.js";

const TABLES = Object.keys(NAT_TABLES) as NatTableName[];

/** Prints a NAT table view (any engine) as text or JSON lines. */
export function printNat(nat: NatTables, json: boolean, io: Output, title = "NAT"): void {
  const records = nat.list();
  if (json) {
    for (const r of records) io.out(toJson({ type: "nat", ...natJson(r) }));
    return;
  }
  io.out(`${title} (${records.length} entries, ${records.length / 2} mappings):`);
  io.out(records.length ? natTable(records) : "(empty)");
}

function tablesOf(table: string | undefined): NatTableName[] {
  if (table === undefined) return TABLES;
  if (!TABLES.includes(table as NatTableName)) throw new InvalidInputError(`--table: expected one of ${TABLES.join(", ")}, got "${table}"`);
  return [table as NatTableName];
}

export function bpfNatList(opts: { pinDir?: string; table?: string; json: boolean }, io: Output): void {
  const dir = opts.pinDir ?? defaultPinDir();
  const records = readPinnedNat(dir, tablesOf(opts.table));
  if (opts.json) {
    for (const r of records) io.out(toJson(natJson(r)));
    return;
  }
  io.out(`Kernel NAT in ${dir} (${records.length} entries):`);
  io.out(records.length ? natTable(records) : "(empty)");
}

/**
 * Empties the pinned NAT maps. Live flows get new mappings on their next egress
 * packet (the original port again when it is still free); replies arriving
 * before that are dropped with DROP_NAT_NO_MAPPING.
 */
export function bpfNatFlush(opts: { pinDir?: string; table?: string }, io: Output): void {
  const dir = opts.pinDir ?? defaultPinDir();
  for (const { table, entries } of flushPinnedNat(dir, tablesOf(opts.table))) io.out(`flushed ${table}: ${entries} entries`);
}

/** `membrane bpf nat <verb> [options]`. */
export function runBpfNat(verb: string | undefined, args: string[], io: Output): void {
  const { values, positionals } = parseArgs({
    args, allowPositionals: true,
    options: { "pin-dir": { type: "string" }, table: { type: "string" }, json: { type: "boolean", default: false } },
  });
  if (positionals.length) throw new InvalidInputError(`bpf nat ${verb}: unexpected argument "${positionals[0]}"`);
  if (verb === "list") return bpfNatList({ pinDir: values["pin-dir"], table: values.table, json: values.json }, io);
  if (verb === "flush") {
    if (values.json) throw new InvalidInputError("bpf nat flush: --json is for list");
    return bpfNatFlush({ pinDir: values["pin-dir"], table: values.table }, io);
  }
  throw new InvalidInputError(`bpf nat: expected "list" or "flush", got "${verb ?? ""}"`);
}
