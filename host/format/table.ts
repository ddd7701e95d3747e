/** Aligned text tables for people; numbers align right. */

export interface Column<Row> {
  header: string;
  value: (row: Row) => string | number | bigint;
  /** Right-aligned; defaults to true for numeric values. */
  right?: boolean;
}

export function renderTable<Row>(columns: Column<Row>[], rows: Row[]): string {
  const cells = rows.map((r) => columns.map((c) => c.value(r)));
  const right = columns.map((c, i) => c.right ?? (cells.length > 0 && typeof cells[0][i] !== "string"));
  const text = cells.map((row) => row.map(String));
  const widths = columns.map((c, i) => Math.max(c.header.length, ...text.map((row) => row[i].length)));
  const line = (values: string[]) =>
    values.map((v, i) => (right[i] ? v.padStart(widths[i]) : v.padEnd(widths[i]))).join("  ").trimEnd();
  return [line(columns.map((c) => c.header)), ...text.map(line)].join("\n");
}

/** JSON.stringify that writes bigint counters as numbers and byte arrays as hex. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_key, v) => {
    if (typeof v === "bigint") return Number(v);
    if (v instanceof Uint8Array) return Buffer.from(v).toString("hex");
    return v;
  });
}
