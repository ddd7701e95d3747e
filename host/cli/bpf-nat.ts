/**
 * `membrane bpf nat list` and `membrane bpf nat flush`: the kernel datapath's
 * NAT maps, read from their pins; and the NAT table as printed for any engine
 * (replay prints the Wasm or kernel one after a run).
 */
import { join } from "node:path";
import { existsSync } from "node:fs";
import { Command } from "commander";
import { BpfMap } from "../bpf/map.js";
import { pinDir as defaultPinDir } from "../bpf/bpffs.js";
import { InvalidInputError } from "../errors.js";
import { joinRecord, PROTO_NAMES } from "../conntrack/records.js";
import { NAT_TABLES, decodeNatRecord, type NatRecord, type NatTableName } from "../nat/records.js";
import type { NatTables } from "../nat/tables.js";
import type { Output } from "./output.js";
import { renderTable, toJson } from "./table.js";
import { example, jsonOption, outputOf, refuseOtherVerbs } from "./command.js";

const TABLES = Object.keys(NAT_TABLES) as NatTableName[];

const endpoint = (addr: string, port: number) => (addr.includes(":") ? `[${addr}]:${port}` : `${addr}:${port}`);

export function natJson(r: NatRecord) {
  return { table: r.table, dir: r.dir, proto: r.proto, src: r.src, sport: r.sport, dst: r.dst, dport: r.dport, toAddr: r.toAddr, toPort: r.toPort, created: r.created };
}

/** Both halves of every pair, forward first, as people read them. */
export function natTable(records: NatRecord[]): string {
  const sorted = [...records].sort((a, b) => a.table.localeCompare(b.table) || a.dir.localeCompare(b.dir) || Buffer.compare(a.key, b.key));
  return renderTable<NatRecord>([
    { header: "TABLE", value: (r) => r.table },
    { header: "DIR", value: (r) => r.dir },
    { header: "PROTO", value: (r) => PROTO_NAMES[r.proto] ?? String(r.proto) },
    { header: "MATCH", value: (r) => `${endpoint(r.src, r.sport)} -> ${endpoint(r.dst, r.dport)}` },
    { header: "REWRITE", value: (r) => `${r.dir === "egress" ? "source" : "destination"} ${endpoint(r.toAddr, r.toPort)}` },
    { header: "CT CREATED", value: (r) => r.created },
  ], sorted);
}

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

function openPinned(dir: string, table: NatTableName): BpfMap {
  const path = join(dir, table);
  if (!existsSync(path)) throw new InvalidInputError(`read ${path}: no pinned NAT map there (is the kernel datapath attached with pinning to ${dir}?)`);
  return BpfMap.openPinned(path);
}

function tablesOf(table: string | undefined): NatTableName[] {
  if (table === undefined) return TABLES;
  if (!TABLES.includes(table as NatTableName)) throw new InvalidInputError(`--table: expected one of ${TABLES.join(", ")}, got "${table}"`);
  return [table as NatTableName];
}

export function bpfNatList(opts: { pinDir?: string; table?: string; json: boolean }, io: Output): void {
  const dir = opts.pinDir ?? defaultPinDir();
  const records: NatRecord[] = [];
  for (const t of tablesOf(opts.table)) {
    const map = openPinned(dir, t);
    try {
      for (const [k, v] of map.dump()) records.push(decodeNatRecord(t, joinRecord(k, v)));
    } finally {
      map.close();
    }
  }
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
  const maps = tablesOf(opts.table).map((t) => [t, openPinned(dir, t)] as const); // all found before any is touched
  try {
    for (const [t, map] of maps) {
      const n = map.dump().length;
      map.clear();
      io.out(`flushed ${t}: ${n} entries`);
    }
  } finally {
    for (const [, map] of maps) map.close();
  }
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
