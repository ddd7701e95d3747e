/**
 * `npm run bench:lb-fairness`: how fairly each backend-selection algorithm
 * shares new flows among a service's backends, how much of a Maglev table
 * moves when one backend goes away, and what building a table costs.
 *
 * - Shares: 1,000,000 synthetic flows (seeded 32-bit flow hashes, the same
 *   flows for every algorithm), N backends. max/mean is the busiest
 *   backend's flows over the mean; 1.00 is perfect. With 1M flows the counts
 *   themselves carry sampling noise (about 1/sqrt(1M/N)), so the table-entry
 *   max/mean, which has none, is printed beside it for the tables.
 *   - random: services v2, slot = hash % N over dense slots.
 *   - legacy after churn: the pre-v2 slots (host/lb/slot-models.ts): every
 *     other backend removed one at a time (their slots refilled with
 *     duplicates), then all added back.
 *   - maglev, every variant of host/lb/maglev.ts: M = 16381.
 * - Disruption: entries of the M = 16381 table whose backend changes when one
 *   backend is removed, averaged over REMOVALS different backends, against the
 *   ideal M/N (only the removed backend's entries move).
 * - Build time: tinybench mean per table for M = 16381, 65521 and N = 100, 1000.
 *
 * Writes bench/results/lb-fairness.json and bench/results/lb-fairness.svg.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Bench } from "tinybench";
import { packageRoot } from "../host/package-root.js";
import { maglevTable, MAGLEV_DEFAULT_VARIANT, MAGLEV_VARIANTS, type MaglevBackend, type MaglevVariant } from "../host/lb/maglev.js";
import { fmix32 } from "../host/lb/murmur3.js";
import { LegacySlots, maglevIndex, randomSlot } from "../host/lb/slot-models.js";
import { countPerBackend, maxOverMean, minOverMean, movedEntries } from "../host/lb/table-stats.js";
import { num, printTable, type Row } from "./report.js";

const FLOWS = 1_000_000;
const FLOW_SEED = 0x5eed_f10e;
const M = 16381;
const BACKEND_COUNTS = [10, 100, 163];
const REMOVALS = 10;
const BUILD_SIZES: readonly [m: number, n: number][] = [
  [16381, 100],
  [16381, 1000],
  [65521, 100],
  [65521, 1000],
];

/** Flow i's hash: a bijection of i, so the 1M flows are distinct and uniformly spread. */
function flowHashes(count: number): Uint32Array {
  const hashes = new Uint32Array(count);
  for (let i = 0; i < count; i++) hashes[i] = fmix32(Math.imul(i, 0x9e3779b1) ^ FLOW_SEED);
  return hashes;
}

/** Backends 1..n with keys in distinct /24s, as pods spread over nodes. */
function syntheticBackends(n: number): MaglevBackend[] {
  return Array.from({ length: n }, (_, i) => ({ id: i + 1, key: `10.${(i >> 8) & 255}.${i & 255}.7:8080/tcp` }));
}

interface ShareRow {
  backends: number;
  algorithm: string;
  flowMaxOverMean: number;
  flowMinOverMean: number;
  /** For slot/table-based algorithms: max/mean of the entries each backend holds. */
  entryMaxOverMean: number;
  entries: number;
}

function shareRow(backends: number, algorithm: string, picks: Uint32Array, entries: ArrayLike<number>, ids: number[]): ShareRow {
  const flows = countPerBackend(picks);
  const held = countPerBackend(entries);
  return {
    backends,
    algorithm,
    flowMaxOverMean: maxOverMean(flows, ids),
    flowMinOverMean: minOverMean(flows, ids),
    entryMaxOverMean: maxOverMean(held, ids),
    entries: entries.length,
  };
}

function shares(hashes: Uint32Array): ShareRow[] {
  const rows: ShareRow[] = [];
  const picks = new Uint32Array(hashes.length);
  for (const n of BACKEND_COUNTS) {
    const backends = syntheticBackends(n);
    const ids = backends.map((b) => b.id);

    for (let f = 0; f < hashes.length; f++) picks[f] = ids[randomSlot(hashes[f]!, n) - 1]!;
    rows.push(shareRow(n, "random (v2)", picks, ids, ids));

    const legacy = new LegacySlots(ids);
    const churned = ids.filter((_, i) => i % 2 === 0);
    for (const id of churned) legacy.remove(id);
    for (const id of churned) legacy.add(id);
    for (let f = 0; f < hashes.length; f++) picks[f] = legacy.select(hashes[f]!)!;
    rows.push(shareRow(n, "legacy after churn", picks, legacy.slots, ids));

    for (const variant of MAGLEV_VARIANTS) {
      const table = maglevTable(backends, M, variant);
      for (let f = 0; f < hashes.length; f++) picks[f] = table[maglevIndex(hashes[f]!, M)]!;
      rows.push(shareRow(n, `maglev ${variant}`, picks, table, ids));
    }
  }
  return rows;
}

interface DisruptionRow {
  backends: number;
  ideal: number;
  /** Mean moved entries per variant. */
  moved: Record<MaglevVariant, number>;
}

function disruption(): DisruptionRow[] {
  return BACKEND_COUNTS.map((n) => {
    const backends = syntheticBackends(n);
    const moved = {} as Record<MaglevVariant, number>;
    for (const variant of MAGLEV_VARIANTS) {
      const before = maglevTable(backends, M, variant);
      let total = 0;
      for (let r = 0; r < REMOVALS; r++) {
        const gone = Math.floor(((r + 0.5) * n) / REMOVALS); // spread over the key order
        total += movedEntries(before, maglevTable(backends.filter((_, i) => i !== gone), M, variant));
      }
      moved[variant] = total / REMOVALS;
    }
    return { backends: n, ideal: M / n, moved };
  });
}

interface BuildRow {
  m: number;
  backends: number;
  /** Mean ms per build, per variant. */
  ms: Record<MaglevVariant, number>;
}

async function buildTimes(): Promise<BuildRow[]> {
  const bench = new Bench({ time: 300, iterations: 3, warmupIterations: 1, warmupTime: 50, throws: true });
  for (const [m, n] of BUILD_SIZES) {
    const backends = syntheticBackends(n);
    for (const variant of MAGLEV_VARIANTS) bench.add(`${m}/${n}/${variant}`, () => void maglevTable(backends, m, variant));
  }
  await bench.run();
  return BUILD_SIZES.map(([m, n]) => {
    const ms = {} as Record<MaglevVariant, number>;
    for (const variant of MAGLEV_VARIANTS) {
      const result = bench.getTask(`${m}/${n}/${variant}`)!.result;
      if (result.state !== "completed") throw new Error(`build ${m}/${n}/${variant}: ${result.state}`);
      ms[variant] = result.latency.mean;
    }
    return { m, backends: n, ms };
  });
}

const ratio = (x: number) => `${num(x, 3)}`;

function print(shareRows: ShareRow[], disruptionRows: DisruptionRow[], buildRows: BuildRow[]): void {
  const algorithms = [...new Set(shareRows.map((r) => r.algorithm))];
  const byCell = (n: number, a: string) => shareRows.find((r) => r.backends === n && r.algorithm === a)!;
  printTable(
    `Flow shares, max/mean over ${num(FLOWS)} flows (M = ${M} for maglev)`,
    BACKEND_COUNTS.map((n) => Object.fromEntries([["N", n], ...algorithms.map((a) => [a, ratio(byCell(n, a).flowMaxOverMean)])]) as Row),
    [`sampling noise alone is about 1/sqrt(${num(FLOWS)}/N): random (v2) shows that floor`],
  );
  printTable(
    "Flow shares, min/mean",
    BACKEND_COUNTS.map((n) => Object.fromEntries([["N", n], ...algorithms.map((a) => [a, ratio(byCell(n, a).flowMinOverMean)])]) as Row),
  );
  printTable(
    "Entries held per backend (slots or table entries), max/mean: no sampling noise",
    BACKEND_COUNTS.map((n) =>
      Object.fromEntries([
        ["N", n],
        ...algorithms.map((a) => [a, `${ratio(byCell(n, a).entryMaxOverMean)} of ${num(byCell(n, a).entries)}`]),
      ]) as Row,
    ),
    ["target for maglev at M = 16381, N <= 163: max/mean <= 1.01"],
  );
  printTable(
    `Maglev disruption: entries moved when one backend is removed (M = ${M}, mean of ${REMOVALS} removals)`,
    disruptionRows.map((r) => {
      const row: Row = { N: r.backends, "ideal M/N": num(r.ideal, 1) };
      for (const v of MAGLEV_VARIANTS) row[v] = `${num(r.moved[v], 1)} (${num(r.moved[v] / r.ideal, 2)}x)`;
      row[`${MAGLEV_DEFAULT_VARIANT} vs plain`] = `${num(r.moved[MAGLEV_DEFAULT_VARIANT] / r.moved.plain, 2)}x`;
      return row;
    }),
    ["(Nx) = moved / ideal; 1.00x moves only the removed backend's own entries"],
  );
  printTable(
    "Maglev build time per table, ms (tinybench mean)",
    buildRows.map((r) => {
      const row: Row = { M: r.m, N: r.backends };
      for (const v of MAGLEV_VARIANTS) row[v] = num(r.ms[v], 2);
      row[`${MAGLEV_DEFAULT_VARIANT} vs plain`] = `${num(r.ms[MAGLEV_DEFAULT_VARIANT] / r.ms.plain, 1)}x`;
      return row;
    }),
  );
}

/** Grouped bar chart: flow max/mean per algorithm, one group per N, plus the disruption ratios. Hand-written SVG. */
function svg(shareRows: ShareRow[], disruptionRows: DisruptionRow[]): string {
  const algorithms = [...new Set(shareRows.map((r) => r.algorithm))];
  const colors = ["#4e79a7", "#e15759", "#f28e2b", "#59a14f", "#76b7b2", "#b07aa1"];
  const width = 900;
  const chartHeight = 300;
  const top = 50;
  const left = 60;
  const plotWidth = width - left - 20;
  const maxValue = Math.max(2, Math.ceil(Math.max(...shareRows.map((r) => r.flowMaxOverMean)) * 2) / 2);
  const y = (v: number) => top + chartHeight - (v / maxValue) * chartHeight;
  const groupWidth = plotWidth / BACKEND_COUNTS.length;
  const barWidth = (groupWidth * 0.8) / algorithms.length;
  const out: string[] = [];
  const text = (x: number, yy: number, s: string, extra = "") =>
    out.push(`<text x="${x.toFixed(1)}" y="${yy.toFixed(1)}" ${extra}>${s.replace(/&/g, "&amp;").replace(/</g, "&lt;")}</text>`);
  text(left, 24, `Flow share of the busiest backend over the mean (${num(FLOWS)} flows; 1.0 = perfectly even)`, 'font-weight="bold"');
  for (let v = 0; v <= maxValue; v += 0.5) {
    out.push(`<line x1="${left}" x2="${left + plotWidth}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`);
    text(left - 8, y(v) + 4, v.toFixed(1), 'text-anchor="end"');
  }
  out.push(`<line x1="${left}" x2="${left + plotWidth}" y1="${y(1.01)}" y2="${y(1.01)}" stroke="#c00" stroke-dasharray="4 3"/>`);
  BACKEND_COUNTS.forEach((n, g) => {
    const x0 = left + g * groupWidth + groupWidth * 0.1;
    algorithms.forEach((a, i) => {
      const value = shareRows.find((r) => r.backends === n && r.algorithm === a)!.flowMaxOverMean;
      const x = x0 + i * barWidth;
      out.push(`<rect x="${x.toFixed(1)}" y="${y(value).toFixed(1)}" width="${(barWidth - 2).toFixed(1)}" height="${(y(0) - y(value)).toFixed(1)}" fill="${colors[i % colors.length]}"/>`);
      text(x + barWidth / 2 - 1, y(value) - 4, value.toFixed(2), 'text-anchor="middle" font-size="10"');
    });
    text(left + g * groupWidth + groupWidth / 2, y(0) + 18, `N = ${n}`, 'text-anchor="middle"');
  });
  const legendY = top + chartHeight + 40;
  const perRow = 3;
  algorithms.forEach((a, i) => {
    const x = left + (i % perRow) * 260;
    const yy = legendY + Math.floor(i / perRow) * 18;
    out.push(`<rect x="${x}" y="${yy - 10}" width="12" height="12" fill="${colors[i % colors.length]}"/>`);
    text(x + 16, yy, a);
  });
  const targetY = legendY + Math.ceil(algorithms.length / perRow) * 18;
  out.push(`<line x1="${left}" x2="${left + 12}" y1="${targetY - 4}" y2="${targetY - 4}" stroke="#c00" stroke-dasharray="4 3"/>`);
  text(left + 16, targetY, "1.01: the maglev target for table entries (flow shares add sampling noise)");
  // Disruption: moved / ideal per Maglev variant.
  const top2 = targetY + 50;
  const height2 = 200;
  const max2 = Math.ceil(Math.max(...disruptionRows.flatMap((r) => MAGLEV_VARIANTS.map((v) => r.moved[v] / r.ideal))));
  const y2 = (v: number) => top2 + height2 - (v / max2) * height2;
  text(left, top2 - 16, `Maglev entries moved on removing one backend, over the ideal M/N (M = ${M})`, 'font-weight="bold"');
  for (let v = 0; v <= max2; v++) {
    out.push(`<line x1="${left}" x2="${left + plotWidth}" y1="${y2(v)}" y2="${y2(v)}" stroke="#ddd"/>`);
    text(left - 8, y2(v) + 4, `${v}x`, 'text-anchor="end"');
  }
  const bar2 = (groupWidth * 0.6) / MAGLEV_VARIANTS.length;
  disruptionRows.forEach((r, g) => {
    const x0 = left + g * groupWidth + groupWidth * 0.2;
    MAGLEV_VARIANTS.forEach((v, i) => {
      const value = r.moved[v] / r.ideal;
      const x = x0 + i * bar2;
      const color = colors[(algorithms.indexOf(`maglev ${v}`) + colors.length) % colors.length];
      out.push(`<rect x="${x.toFixed(1)}" y="${y2(value).toFixed(1)}" width="${(bar2 - 2).toFixed(1)}" height="${(y2(0) - y2(value)).toFixed(1)}" fill="${color}"/>`);
      text(x + bar2 / 2 - 1, y2(value) - 4, `${value.toFixed(2)}x`, 'text-anchor="middle" font-size="10"');
    });
    text(left + g * groupWidth + groupWidth / 2, y2(0) + 18, `N = ${r.backends}`, 'text-anchor="middle"');
  });
  const height = top2 + height2 + 40;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    ...out,
    "</svg>",
    "",
  ].join("\n");
}

async function main(): Promise<void> {
  const started = performance.now();
  const shareRows = shares(flowHashes(FLOWS));
  const disruptionRows = disruption();
  const buildRows = await buildTimes();
  print(shareRows, disruptionRows, buildRows);

  const dir = join(packageRoot(), "bench", "results");
  mkdirSync(dir, { recursive: true });
  const json = join(dir, "lb-fairness.json");
  const image = join(dir, "lb-fairness.svg");
  const summary = { date: new Date().toISOString(), flows: FLOWS, m: M, removals: REMOVALS, shares: shareRows, disruption: disruptionRows, build: buildRows };
  writeFileSync(json, JSON.stringify(summary, null, 2) + "\n");
  writeFileSync(image, svg(shareRows, disruptionRows));
  console.log(`\nDone in ${((performance.now() - started) / 1000).toFixed(1)} s; wrote ${json} and ${image}`);
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : e);
  process.exitCode = 1;
});
