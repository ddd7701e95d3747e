// `membrane demo --metrics`: the demo's forwarder exports its datapath series
// labelled with its node, read from the forwarder's reports; after the run the
// scrape holds the forwards it decided and the exposition passes promtool.
import { describe, expect, it } from "vitest";
import { runDemo } from "../../host/demo/demo.js";
import { demoUnavailable } from "../../host/demo/requirements.js";
import { createMetrics } from "../../host/metrics/index.js";
import { describeIf } from "../support/describe-if.js";
import { promtool, promtoolMissing, sum } from "../metrics/support.js";

describeIf("membrane demo --metrics", demoUnavailable() ?? promtoolMissing, () => {
  it("labels the forwarder's series with its node; the scrape holds its newest report", async () => {
    const metrics = createMetrics();
    const out: string[] = [];
    const result = await runDemo({ out: (l) => out.push(l), err: (l) => out.push(l) }, { seconds: 2, json: true, prefix: `ob-demo${process.pid % 1000}`, metrics });
    expect(result.ran).toBe(true);
    const text = await metrics.registry.metrics();
    const node = /node="([^"]+)"/.exec(text.split("\n").find((l) => l.startsWith("membrane_forward_count_total{")) ?? "")?.[1];
    expect(node).toMatch(/^ob-demo\d+-node$/);
    // The scrape holds the forwarder's newest report: the last one the demo printed, or one after it
    // (reports that arrive while the demo winds down are recorded, not printed).
    const reports = out.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l)).filter((r) => r.type === "report");
    const last = reports.at(-1);
    expect(last.counters.forwarded.egress.packets + last.counters.forwarded.ingress.packets).toBeGreaterThan(0);
    expect(sum(text, "membrane_forward_count_total", { node: node!, direction: "EGRESS" })).toBeGreaterThanOrEqual(last.counters.forwarded.egress.packets);
    expect(sum(text, "membrane_forward_count_total", { node: node!, direction: "INGRESS" })).toBeGreaterThanOrEqual(last.counters.forwarded.ingress.packets);
    expect(sum(text, "membrane_forwarder_packets_total", { node: node! })).toBeGreaterThanOrEqual(last.stats.packetsIn);
    expect(promtool(text)).toBe("");
  }, 60_000);
});
