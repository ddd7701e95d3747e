// Shared by the metrics tests: reading one series out of a text exposition, and running promtool on one.
import { spawnSync } from "node:child_process";
import { createServer } from "node:net";

/** Value of one series in a text exposition (labels matched exactly), or undefined when absent. */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[3] ?? "").matchAll(/([a-z_]+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v) && Object.keys(got).length === Object.keys(labels).length) return Number(m[4]);
  }
  return undefined;
}

/** Sum of every series of `name` whose labels include `labels`. */
export function sum(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const line of text.split("\n")) {
    const m = /^([a-z_]+)(\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[3] ?? "").matchAll(/([a-z_]+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) total += Number(m[4]);
  }
  return total;
}

export const promtoolMissing = spawnSync("promtool", ["--version"]).error ? "promtool is not installed (Debian: prometheus)" : undefined;

/** promtool check metrics on `text`: its complaints ("" when clean). */
export function promtool(text: string): string {
  const check = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
  return `${check.stdout}${check.stderr}`.trim() + (check.status === 0 ? "" : ` (exit ${check.status})`);
}

/** A loopback TCP port nothing listens on right now. */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}
