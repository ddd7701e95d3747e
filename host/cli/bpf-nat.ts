/**
 * `membrane bpf nat list` and `membrane bpf nat flush`: the kernel datapath's
 * NAT maps, read from their pins; and the NAT table as printed for any engine
 * (replay prints the Wasm or kernel one after a run).
 */
import { Command } from "commander";
import { pinDir as defaultPinDir } from "../bpf/bpffs.js";
import { InvalidInputError } from "../errors.js";
import { NAT_TABLES, type NatTableName } from "../nat/records.js";
import type { NatTables } from "../nat/tables.js";
import { flushPinnedNat, readPinnedNat } from "../kernel/pinned-nat.js";
import { natJson, natTable } from "../format/nat.js";
import type { Output } from "../format/output.js";
import { toJson } from "../format/table.js";
import { example, jsonOption, outputOf, refuseOtherVerbs } from "./command.js";

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

/** `membrane bpf nat list|flush [--pin-dir D] [--table T]` */
export function registerBpfNat(bpf: Command): void {
  const nat = bpf.command("nat").description("the kernel's NAT maps (pinned): list them or flush them");
  refuseOtherVerbs(nat, (got) => `bpf nat: expected "list" or "flush", got "${got[0] ?? ""}"`);
  example(nat, "membrane bpf nat list --table nat4");
  const pinDir = "where the maps are pinned (default /sys/fs/bpf/membrane, or $MEMBRANE_BPFFS)";
  const table = `${TABLES.join(" or ")} (default: all)`;
  const list = nat.command("list").description("both halves of every NAT mapping: match and rewrite")
    .option("--pin-dir <dir>", pinDir).option("--table <t>", table);
  jsonOption(list, "JSON lines, one entry each");
  example(list, "membrane bpf nat list", "membrane bpf nat list --table nat6 --json");
  list.action((o: { pinDir?: string; table?: string; json: boolean }, self: Command) => {
    bpfNatList({ pinDir: o.pinDir, table: o.table, json: o.json }, outputOf(self));
  });
  const flush = nat.command("flush")
    .description("empty the NAT maps: live flows get new mappings on their next egress packet; replies before that are dropped (DROP_NAT_NO_MAPPING)")
    .option("--pin-dir <dir>", pinDir).option("--table <t>", table);
  example(flush, "sudo membrane bpf nat flush --table nat4");
  flush.action((o: { pinDir?: string; table?: string }, self: Command) => {
    bpfNatFlush({ pinDir: o.pinDir, table: o.table }, outputOf(self));
  });
}
