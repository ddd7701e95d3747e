// The dashboard picture's arithmetic: each panel's PromQL read for metric,
// grouping and kind; counters summed per group; histogram_quantile over
// cumulative buckets as Prometheus interpolates it; and every panel of the
// committed dashboard finds data in the committed agent scrape or says so.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { evaluatePanel, parseExposition, renderSvg } from "../../host/tools/render-dashboard.js";
import { packageRoot } from "../../host/package-root.js";

const scrape = parseExposition(`
membrane_drop_count_total{reason="Policy denied",direction="EGRESS"} 3
membrane_drop_count_total{reason="Policy denied",direction="INGRESS"} 2
membrane_drop_count_total{reason="Invalid packet",direction="EGRESS"} 1
membrane_api_process_time_seconds_bucket{le="0.001",method="GET",path="/v1/status",return_code="200"} 50
membrane_api_process_time_seconds_bucket{le="0.01",method="GET",path="/v1/status",return_code="200"} 100
membrane_api_process_time_seconds_bucket{le="+Inf",method="GET",path="/v1/status",return_code="200"} 100
`);

describe("render-dashboard", () => {
  it("sums counters by the panel's label", () => {
    expect(evaluatePanel("sum by (reason) (rate(membrane_drop_count_total[1m]))", scrape)).toEqual([
      { label: "Policy denied", value: 5 },
      { label: "Invalid packet", value: 1 },
    ]);
  });

  it("interpolates a quantile within its bucket", () => {
    const [p] = evaluatePanel("histogram_quantile(0.99, sum by (le, path) (rate(membrane_api_process_time_seconds_bucket[5m])))", scrape);
    // rank 99 of 100 lies in (0.001, 0.01]: 0.001 + 0.009 * (99 - 50) / 50
    expect(p!.label).toBe("/v1/status");
    expect(p!.value).toBeCloseTo(0.001 + (0.009 * 49) / 50, 9);
  });

  it("draws every panel of the committed dashboard from the committed scrape", () => {
    const root = packageRoot();
    const dashboard = JSON.parse(readFileSync(join(root, "docs/grafana/membrane-dashboard.json"), "utf8"));
    const samples = parseExposition(readFileSync(join(root, "docs/grafana/scrape-agent.txt"), "utf8"));
    const svg = renderSvg(dashboard, samples, "test");
    for (const p of dashboard.panels) expect(svg).toContain(p.title);
    expect(svg).toContain("Policy denied");
  });
});
