/** `membrane sim`: bad sizes are refused with the option named before anything starts; a tiny run prints its tables and JSON. */
import { expect, it } from "vitest";
import { run } from "../../host/cli/main.js";

async function sim(args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await run(["sim", "--quiet", ...args], { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

it.each([
  [["--pods", "5000", "--nodes", "10"], "--pods: at most 200 pods per node"],
  [["--full-agents", "1"], "--full-agents: expected 2..1000"],
  [["--nodes", "10", "--pods", "100", "--agents", "20"], "--agents: at most --nodes (10)"],
  [["--kvstore", "consul:x"], "--kvstore: expected etcd, etcd:<endpoints>, embedded or embedded:<path>"],
])("refuses %j", async (args, message) => {
  const r = await sim(args);
  expect(r.code).toBe(2);
  expect(r.err).toContain(message);
});

it("a tiny cluster on the embedded store prints the report as JSON", async () => {
  const r = await sim(["--kvstore", "embedded", "--nodes", "6", "--pods", "60", "--services", "10", "--label-sets", "6", "--full-agents", "2", "--churn-seconds", "1", "--join-nodes", "2", "--json"]);
  expect(r.err).toBe("");
  expect(r.code).toBe(0);
  const report = JSON.parse(r.out);
  expect(report.kvstore.backend).toBe("embedded");
  expect(report.kinds.map((k: { kind: string; notConverged: number }) => [k.kind, k.notConverged])).toEqual([["counting agents", 0], ["full agents", 0]]);
  expect(report.counts.every((c: { ok: boolean }) => c.ok)).toBe(true);
}, 120_000);
