/**
 * `membrane bpf ct list`: the kernel's conntrack maps, read from their pins,
 * as a table or JSON. Lifetimes are on the kernel's monotonic clock, which is
 * what Node's hrtime reads on Linux.
 */
import { pinDir as defaultPinDir } from "../bpf/bpffs.js";
import { CT_TABLES, type CtTableName } from "../conntrack/records.js";
import { monotonicSeconds, readPinnedConntrack } from "../kernel/pinned-conntrack.js";
import { InvalidInputError } from "../errors.js";
import type { Output } from "../format/output.js";
import { ctJson, ctTable } from "../format/conntrack.js";
import { toJson } from "../format/table.js";

export interface BpfCtListOptions {
  pinDir?: string;
  table?: string;
  json: boolean;
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
  io.out(records.length ? ctTable(records, now) : "(empty)");
}
