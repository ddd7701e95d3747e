/** Aligned text tables for people; numbers align right. */

export interface Column<Row> {
  header: string;
  value: (row: Row) => string | number | bigint;
  /** Right-aligned; defaults to true for numeric values. */
  right?: boolean;
}

/**
 * The table as lines, header first. Widths are found with a loop over the
 * rows: spreading rows into Math.max overflows the stack past ~125,000 rows
 * (a replay's conntrack table reaches millions).
 */
export function tableLines<Row>(columns: Column<Row>[], rows: readonly Row[]): string[] {
  const text: string[][] = new Array(rows.length);
  const widths = columns.map((c) => c.header.length);
  const right = columns.map((c) => c.right);
  for (let r = 0; r < rows.length; r++) {
    const cells = new Array<string>(columns.length);
    for (let i = 0; i < columns.length; i++) {
      const v = columns[i].value(rows[r]);
      if (r === 0 && right[i] === undefined) right[i] = typeof v !== "string";
      const cell = String(v);
      cells[i] = cell;
      if (cell.length > widths[i]) widths[i] = cell.length;
    }
    text[r] = cells;
  }
  const line = (values: string[]) =>
    values.map((v, i) => (right[i] ? v.padStart(widths[i]) : v.padEnd(widths[i]))).join("  ").trimEnd();
  const lines = new Array<string>(rows.length + 1);
  lines[0] = line(columns.map((c) => c.header));
  for (let r = 0; r < text.length; r++) lines[r + 1] = line(text[r]);
  return lines;
}

export function renderTable<Row>(columns: Column<Row>[], rows: readonly Row[]): string {
  return tableLines(columns, rows).join("\n");
}

/** JSON.stringify that writes bigint counters as numbers and byte arrays as hex. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_key, v) => {
    if (typeof v === "bigint") return Number(v);
    if (v instanceof Uint8Array) return Buffer.from(v).toString("hex");
    return v;
  });
}
