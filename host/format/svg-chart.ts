/**
 * Small SVG charts written as text (no browser, no canvas): a line chart of
 * series over x, and a grouped bar chart of on/off pairs. Enough for the
 * reports in docs/ and bench/results/.
 */
export interface Series {
  name: string;
  points: readonly (readonly [number, number])[];
}

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];
const W = 640;
const H = 360;
const M = { left: 64, right: 16, top: 36, bottom: 48 };

function esc(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function tick(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (a >= 1e4) return `${(v / 1e3).toFixed(0)}k`;
  if (a >= 100 || v === Math.round(v)) return v.toFixed(0);
  return v.toPrecision(2);
}

function frame(title: string, xLabel: string, yLabel: string, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${esc(title)}</text>`,
    `<text x="${W / 2}" y="${H - 8}" text-anchor="middle">${esc(xLabel)}</text>`,
    `<text x="14" y="${H / 2}" text-anchor="middle" transform="rotate(-90 14 ${H / 2})">${esc(yLabel)}</text>`,
    ...body,
    "</svg>",
    "",
  ].join("\n");
}

function yAxis(maxY: number, plotH: number): string[] {
  const out = [`<line x1="${M.left}" y1="${M.top}" x2="${M.left}" y2="${M.top + plotH}" stroke="black"/>`];
  for (let i = 0; i <= 4; i++) {
    const v = (maxY * i) / 4;
    const y = M.top + plotH - (plotH * i) / 4;
    out.push(`<line x1="${M.left - 4}" y1="${y}" x2="${W - M.right}" y2="${y}" stroke="#ddd"/>`, `<text x="${M.left - 6}" y="${y + 4}" text-anchor="end">${tick(v)}</text>`);
  }
  return out;
}

export function lineChart(o: { title: string; xLabel: string; yLabel: string; series: readonly Series[] }): string {
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const all = o.series.flatMap((s) => s.points);
  const maxX = Math.max(1e-9, ...all.map((p) => p[0]));
  const maxY = Math.max(1e-9, ...all.map((p) => p[1])) * 1.05;
  const x = (v: number) => M.left + (v / maxX) * plotW;
  const y = (v: number) => M.top + plotH - (v / maxY) * plotH;
  const body = yAxis(maxY, plotH);
  body.push(`<line x1="${M.left}" y1="${M.top + plotH}" x2="${W - M.right}" y2="${M.top + plotH}" stroke="black"/>`);
  for (let i = 0; i <= 4; i++) body.push(`<text x="${x((maxX * i) / 4)}" y="${M.top + plotH + 16}" text-anchor="middle">${tick((maxX * i) / 4)}</text>`);
  o.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const d = s.points.map((p, j) => `${j ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
    if (d) body.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="1.5"/>`);
    body.push(`<rect x="${M.left + 10}" y="${M.top + 6 + i * 14}" width="10" height="10" fill="${color}"/>`, `<text x="${M.left + 24}" y="${M.top + 15 + i * 14}">${esc(s.name)}</text>`);
  });
  return frame(o.title, o.xLabel, o.yLabel, body);
}

export interface BarGroup {
  label: string;
  /** One value per bar name, in `bars` order. */
  values: readonly number[];
}

/** Groups of bars (e.g. each mechanism with "on" and "off"), each group scaled to its own maximum so different units share a chart. */
export function groupedBarChart(o: { title: string; yLabel: string; bars: readonly string[]; groups: readonly BarGroup[] }): string {
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const gw = plotW / Math.max(1, o.groups.length);
  const bw = (gw * 0.7) / Math.max(1, o.bars.length);
  const body = yAxis(1, plotH);
  o.groups.forEach((g, gi) => {
    const max = Math.max(1e-9, ...g.values);
    g.values.forEach((v, bi) => {
      const h = (v / max) * plotH;
      const bx = M.left + gi * gw + gw * 0.15 + bi * bw;
      body.push(`<rect x="${bx.toFixed(1)}" y="${(M.top + plotH - h).toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${h.toFixed(1)}" fill="${COLORS[bi % COLORS.length]}"/>`);
      body.push(`<text x="${(bx + bw / 2).toFixed(1)}" y="${(M.top + plotH - h - 3).toFixed(1)}" text-anchor="middle" font-size="9">${tick(v)}</text>`);
    });
    body.push(`<text x="${(M.left + gi * gw + gw / 2).toFixed(1)}" y="${M.top + plotH + 16}" text-anchor="middle" font-size="9">${esc(g.label)}</text>`);
  });
  o.bars.forEach((b, i) => body.push(`<rect x="${W - M.right - 150}" y="${M.top + 6 + i * 14}" width="10" height="10" fill="${COLORS[i % COLORS.length]}"/>`, `<text x="${W - M.right - 136}" y="${M.top + 15 + i * 14}">${esc(b)}</text>`));
  return frame(o.title, "", o.yLabel, body);
}
