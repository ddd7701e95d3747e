/**
 * `node dist/host/tools/render-dashboard.js <dashboard.json> <out.png> <scrape.txt>...`:
 * a picture of the Grafana dashboard drawn from real scrapes, without a
 * browser or Grafana. Each panel's PromQL is read for its metric, grouping
 * label and kind; from one scrape a rate has no meaning, so counters show
 * their totals since the process started and histogram quantiles are computed
 * over the cumulative buckets (p99 since start). Panels are drawn as bar
 * charts into an SVG, rasterised by rsvg-convert (Debian's librsvg2-bin).
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Panel {
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  fieldConfig?: { defaults?: { unit?: string } };
  targets: { expr: string }[];
}

export function parseExposition(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)/.exec(line);
    if (!m) continue;
    const labels = Object.fromEntries([...(m[3] ?? "").matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1]!, x[2]!]));
    out.push({ name: m[1]!, labels, value: Number(m[4]) });
  }
  return out;
}

/** Prometheus' histogram_quantile over cumulative buckets (linear within the bucket). */
function quantile(q: number, buckets: { le: number; count: number }[]): number | undefined {
  buckets.sort((a, b) => a.le - b.le);
  const total = buckets.at(-1)?.count ?? 0;
  if (total === 0) return undefined;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const b of buckets) {
    if (b.count >= rank) {
      if (!Number.isFinite(b.le)) return prevLe;
      return prevLe + ((b.le - prevLe) * (rank - prevCount)) / Math.max(1, b.count - prevCount);
    }
    prevLe = b.le;
    prevCount = b.count;
  }
  return prevLe;
}

/** The bars of one panel: (label, value) from the scrape, as its expression asks. */
export function evaluatePanel(expr: string, samples: Sample[]): { label: string; value: number }[] {
  const by = /by \(([^)]*)\)/.exec(expr)?.[1]?.split(",").map((s) => s.trim()).filter((s) => s !== "le") ?? [];
  const selector = /\{([^}]*)\}/.exec(expr)?.[1];
  const want = Object.fromEntries([...(selector ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
  const names = [...new Set(expr.match(/membrane_[a-z_]+/g) ?? [])];
  const matches = (s: Sample) => Object.entries(want).every(([k, v]) => s.labels[k] === v);
  const key = (s: Sample) => (by.length ? by.map((l) => s.labels[l] ?? "").join(",") : names.length > 1 ? s.name.replace(/^membrane_/, "") : s.labels.node ?? "value");
  const groups = new Map<string, number>();
  const hist = /histogram_quantile\(([\d.]+)/.exec(expr);
  if (hist) {
    const buckets = new Map<string, { le: number; count: number }[]>();
    for (const s of samples) {
      if (s.name !== names[0] || !matches(s)) continue;
      const k = key(s);
      const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
      const list = buckets.get(k) ?? [];
      const same = list.find((b) => b.le === le);
      if (same) same.count += s.value;
      else list.push({ le, count: s.value });
      buckets.set(k, list);
    }
    for (const [k, b] of buckets) {
      const v = quantile(Number(hist[1]), b);
      if (v !== undefined) groups.set(k, v);
    }
  } else {
    for (const s of samples) {
      if (!names.includes(s.name) || !matches(s)) continue;
      groups.set(key(s), (groups.get(key(s)) ?? 0) + s.value);
    }
  }
  return [...groups].map(([label, value]) => ({ label: label || "(none)", value })).sort((a, b) => b.value - a.value);
}

const esc = (t: string) => t.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

function formatValue(v: number, unit: string | undefined): string {
  if (unit === "s") return v >= 1 ? `${v.toFixed(2)} s` : v >= 0.001 ? `${(v * 1000).toFixed(2)} ms` : `${(v * 1e6).toFixed(0)} µs`;
  return Math.abs(v) >= 1000 ? v.toLocaleString("en-US", { maximumFractionDigits: 0 }) : String(Math.round(v * 100) / 100);
}

const SUFFIX: Record<string, string> = { pps: "packets since start", s: "since start", short: "" };

export function renderSvg(dashboard: { title: string; panels: Panel[] }, samples: Sample[], caption: string): string {
  const COL = 40; // px per grid unit across (24 units)
  const ROW = 34; // px per grid unit down
  const width = 24 * COL + 20;
  const height = Math.max(...dashboard.panels.map((p) => p.gridPos.y + p.gridPos.h)) * ROW + 80;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="DejaVu Sans, sans-serif">`,
    `<rect width="100%" height="100%" fill="#111217"/>`,
    `<text x="14" y="30" fill="#d8d9da" font-size="20">${esc(dashboard.title)}</text>`,
    `<text x="14" y="52" fill="#8e8e8e" font-size="12">${esc(caption)}</text>`,
  ];
  const palette = ["#73bf69", "#f2cc0c", "#5794f2", "#ff780a", "#f2495c", "#b877d9", "#37872d", "#fade2a"];
  for (const p of dashboard.panels) {
    const x = 10 + p.gridPos.x * COL;
    const y = 64 + p.gridPos.y * ROW;
    const w = p.gridPos.w * COL - 8;
    const h = p.gridPos.h * ROW - 8;
    const unit = p.fieldConfig?.defaults?.unit;
    const bars = evaluatePanel(p.targets[0]!.expr, samples).slice(0, 6);
    parts.push(`<rect x="${x}" y="${y}" width="${w}" height="${h}" rx="3" fill="#181b1f" stroke="#2c3235"/>`);
    const note = /rate\(|increase\(/.test(p.targets[0]!.expr) && !/histogram_quantile/.test(p.targets[0]!.expr) ? ` (${SUFFIX[unit ?? "short"] || "total since start"})` : /histogram_quantile/.test(p.targets[0]!.expr) ? " (since start)" : "";
    parts.push(`<text x="${x + 10}" y="${y + 22}" fill="#d8d9da" font-size="14">${esc(p.title + note)}</text>`);
    if (bars.length === 0) {
      parts.push(`<text x="${x + w / 2}" y="${y + h / 2}" fill="#8e8e8e" font-size="13" text-anchor="middle">No data</text>`);
      continue;
    }
    const max = Math.max(...bars.map((b) => b.value), 1e-12);
    const top = y + 38;
    const barH = Math.min(30, (h - 50) / bars.length - 6);
    const labelW = 170;
    bars.forEach((b, i) => {
      const by = top + i * (barH + 6);
      const bw = Math.max(2, ((w - labelW - 110) * b.value) / max);
      parts.push(`<text x="${x + 10}" y="${by + barH / 2 + 4}" fill="#ccccdc" font-size="12">${esc(b.label.length > 24 ? b.label.slice(0, 23) + "…" : b.label)}</text>`);
      parts.push(`<rect x="${x + labelW}" y="${by}" width="${bw}" height="${barH}" fill="${palette[i % palette.length]}"/>`);
      parts.push(`<text x="${x + labelW + bw + 6}" y="${by + barH / 2 + 4}" fill="#ccccdc" font-size="12">${esc(formatValue(b.value, unit))}</text>`);
    });
  }
  parts.push("</svg>");
  return parts.join("\n");
}

function main(): void {
  const [dashboardPath, outPng, ...scrapes] = process.argv.slice(2);
  if (!dashboardPath || !outPng || scrapes.length === 0) {
    console.error("usage: render-dashboard <dashboard.json> <out.png> <scrape.txt>...");
    process.exit(2);
  }
  const dashboard = JSON.parse(readFileSync(dashboardPath, "utf8")) as { title: string; panels: Panel[] };
  const samples = scrapes.flatMap((f) => parseExposition(readFileSync(f, "utf8")));
  const svg = renderSvg(dashboard, samples, `rendered from ${scrapes.length} scrape(s) of a running membrane agent and operator; counters as totals since start, quantiles over all observations`);
  execFileSync("rsvg-convert", ["-o", outPng], { input: svg });
  console.log(`wrote ${outPng}`);
}

if (import.meta.url === `file://${process.argv[1]}`) main();
