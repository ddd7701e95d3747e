/**
 * Printing results as aligned text tables. console.table quotes strings and
 * adds an index column; plain aligned text reads better in a terminal and in
 * pasted logs, and numbers line up on the right.
 */

export type Cell = string | number;
export type Row = Record<string, Cell>;

/** A number with `digits` decimals, grouped by thousands for readability. */
export function num(n: number, digits = 0): string {
  return n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function mib(bytes: number, digits = 1): string {
  return `${num(bytes / 2 ** 20, digits)} MiB`;
}

export function printTable(title: string, rows: Row[], notes: string[] = []): void {
  console.log(`\n${title}`);
  if (rows.length === 0) {
    console.log("  (no rows)");
  } else {
    const columns = Object.keys(rows[0]!);
    const text = (r: Row, c: string) => String(r[c] ?? "");
    // A column is right-aligned when its cells are numbers or look like them ("1,234", "1.25x", "90.0 MiB").
    const numeric = columns.map((c) => rows.every((r) => typeof r[c] === "number" || /^[-+~]?[\d,.]+/.test(text(r, c))));
    const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => text(r, c).length)));
    const line = (cells: string[]) =>
      "  " + cells.map((s, i) => (numeric[i] ? s.padStart(widths[i]!) : s.padEnd(widths[i]!))).join("  ").trimEnd();
    console.log(line(columns));
    console.log("  " + widths.map((w) => "-".repeat(w)).join("  "));
    for (const r of rows) console.log(line(columns.map((c) => text(r, c))));
  }
  for (const n of notes) console.log(`  * ${n}`);
}
