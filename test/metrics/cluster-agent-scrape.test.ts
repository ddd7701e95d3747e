// A running cluster-mode agent (`membrane agent --kvstore embedded:... --node
// n1 --metrics`, in a namespace of this test's own): its scrape has the
// kvstore calls of its bootstrap (timed below the client discipline, scoped by
// kind of record), each bootstrap step, and the API calls made to it; promtool
// is clean.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { callAgent } from "../../host/api/client.js";
import { NetnsLab, sweep } from "../../host/sys/netns/lab.js";
import { agentUnavailable, CLI } from "../agent/agent-lab.js";
import { describeIf } from "../support/describe-if.js";
import { waitFor } from "../support/wait-for.js";
import { promtool, promtoolMissing, sample } from "./support.js";

describeIf("a running cluster agent's metrics endpoint", agentUnavailable() ?? promtoolMissing, () => {
  const dir = mkdtempSync(join(tmpdir(), "membrane-ob-cluster-metrics-"));
  const stateDir = join(dir, "state");
  const prefix = `ob-cl${process.pid}`;
  const lab = new NetnsLab(prefix);
  let ns: string;

  const scrape = () => {
    const r = spawnSync("ip", ["netns", "exec", ns, "curl", "-sf", "--max-time", "2", "http://127.0.0.1:9962/metrics"], { encoding: "utf8" });
    return r.status === 0 ? r.stdout : undefined;
  };

  beforeAll(async () => {
    await sweep(prefix);
    ns = lab.addNamespace("ns");
    mkdirSync(stateDir, { mode: 0o700 });
    const agent = lab.spawn(ns, [process.execPath, CLI, "agent", "--datapath", "tun", "--device", "obc0", "--state-dir", stateDir, "--kvstore", `embedded:${join(dir, "store")}`, "--node", "n1", "--node-ip", "10.0.0.1", "--pod-cidr", "10.1.0.0/24", "--metrics", "127.0.0.1:9962"], { label: "cluster agent" });
    await agent.waitLine("joined", (l) => typeof l === "string" && l.startsWith("membrane agent: node n1 joined:"), 30_000);
  }, 60_000);

  afterAll(async () => {
    await lab.teardown();
    rmSync(dir, { recursive: true, force: true });
  });

  it("has the bootstrap's kvstore calls and steps, and the API calls made to it", async () => {
    const nodes = await callAgent<{ name: string }[]>(join(stateDir, "agent.sock"), "GET", "/v1/nodes");
    expect(nodes.body.map((n) => n.name)).toEqual(["n1"]);
    const text = await waitFor("a scrape with the API call", () => {
      const t = scrape();
      return t && sample(t, "membrane_api_process_time_seconds_count", { method: "GET", path: "/v1/nodes", return_code: "200" }) === 1 && t;
    });
    expect(sample(text, "membrane_kvstore_operations_duration_seconds_count", { action: "Update", kind: "set", outcome: "success", scope: "membrane/state/nodes" })).toBe(1);
    expect(sample(text, "membrane_kvstore_operations_duration_seconds_count", { action: "GrantLease", kind: "lease", outcome: "success", scope: "/" })).toBeGreaterThanOrEqual(1);
    for (const step of ["reach the kvstore", "register the node", "overall"]) {
      expect(sample(text, "membrane_agent_bootstrap_seconds_count", { scope: step, outcome: "success" })).toBe(1);
    }
    expect(sample(text, "membrane_identity")).toBeGreaterThan(0);
    expect(promtool(text)).toBe("");
  });
});
