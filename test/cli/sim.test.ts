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

it("a join past --join-timeout-ms: the report names the phase INCOMPLETE and the agents behind, later phases run, exit 1", async () => {
  // the apiserver stand-in at 1 request/s: 4 counting agents need 8 GETs to bootstrap, seconds, not the 300 ms allowed
  const r = await sim(["--kvstore", "embedded", "--nodes", "6", "--pods", "60", "--services", "10", "--label-sets", "6", "--full-agents", "2", "--churn-seconds", "1", "--join-nodes", "2", "--apiserver-qps", "1", "--join-timeout-ms", "300", "--restart-variants", "none", "--json"]);
  expect(r.code).toBe(1);
  const report = JSON.parse(r.out);
  const join = report.phases.find((p: { name: string }) => p.name === "4 counting agents join");
  expect(join.outcome).toBe("incomplete");
  expect(report.join.countingSeconds).toBeNull();
  expect(report.failures.incomplete[0]).toMatchObject({ phase: "4 counting agents join", wait: "every counting agent up", boundMs: 300 });
  expect(report.failures.incomplete[0].agentsBehind).toBeGreaterThan(0);
  expect(report.failures.incomplete[0].behind[0].lacks).toMatch(/^still at bootstrap step "/);
  // the run went on to the end
  expect(report.phases.at(-1)).toMatchObject({ name: "every agent back at the steady cluster" });
  expect(report.mechanisms.map((m: { mechanism: string }) => m.mechanism)).toContain("slim records");
}, 120_000);
