// A running `membrane agent --metrics` (state-file mode, in a namespace of
// this test's own): after known traffic a scrape returns what the datapath
// decided (forwards, policy drops by reason and direction), the bootstrap and
// the endpoints generated; promtool is clean; the endpoint answers only on
// the address it was given. `membrane operator --metrics` exports its
// kvstore calls the same way.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { NetnsLab } from "../../host/sys/netns/lab.js";
import type { NetnsProcess } from "../../host/sys/netns/process.js";
import { spawn } from "node:child_process";
import { agentUnavailable, CLI } from "../agent/agent-lab.js";
import { describeIf } from "../support/describe-if.js";
import { waitFor } from "../support/wait-for.js";
import { freePort, promtool, promtoolMissing, sample } from "./support.js";
import { policyLab, policyStateFile, sendUdp, SRC, startPolicyAgent } from "../monitor/policy-lab.js";

function scrape(ns: string, address: string): string | undefined {
  const r = spawnSync("ip", ["netns", "exec", ns, "curl", "-sf", "--max-time", "2", `http://${address}/metrics`], { encoding: "utf8" });
  return r.status === 0 ? r.stdout : undefined;
}

describeIf("a running agent's metrics endpoint", agentUnavailable() ?? promtoolMissing, () => {
  const dir = mkdtempSync(join(tmpdir(), "membrane-ob-agent-metrics-"));
  let lab: NetnsLab;
  let ns: string;
  let agent: NetnsProcess;

  beforeAll(async () => {
    ({ lab, ns } = await policyLab(`ob-m${process.pid}`));
    const state = await policyStateFile(dir);
    agent = await startPolicyAgent(lab, ns, dir, state, ["--metrics", "127.0.0.1:9962"]);
  }, 60_000);

  afterAll(async () => {
    await lab?.teardown();
    rmSync(dir, { recursive: true, force: true });
  });

  it("says where it listens, and is reachable only there", () => {
    expect(agent.lines).toContain("membrane agent: metrics on http://127.0.0.1:9962/metrics");
    expect(scrape(ns, "127.0.0.1:9962")).toContain("membrane_forward_count_total");
    expect(scrape(ns, `${SRC}:9962`)).toBeUndefined();
  });

  it("a scrape after known traffic returns the forwards and policy drops the datapath decided", async () => {
    sendUdp(ns, 7000, 5); // allowed
    sendUdp(ns, 7001, 3); // denied by the policy
    const text = await waitFor("a report with all 8 datagrams decided", () => {
      const t = scrape(ns, "127.0.0.1:9962");
      return t && sample(t, "membrane_drop_count_total", { reason: "Policy denied", direction: "EGRESS" }) === 3 && (sample(t, "membrane_forward_count_total", { direction: "EGRESS" }) ?? 0) >= 5 && t;
    }, { detail: () => scrape(ns, "127.0.0.1:9962")?.split("\n").filter((l) => /^membrane_(drop|forward)_count/.test(l)).join("; ") ?? "no scrape" });
    // The kernel's own packets on a new device (IPv6 router solicitations) are forwarded too: at least ours.
    expect(sample(text, "membrane_forward_count_total", { direction: "EGRESS" })).toBeGreaterThanOrEqual(5);
    expect(sample(text, "membrane_drop_bytes_total", { reason: "Policy denied", direction: "EGRESS" })).toBe(3 * (20 + 8 + 11));
    expect(sample(text, "membrane_agent_bootstrap_seconds_count", { scope: "overall", outcome: "success" })).toBe(1);
    expect(sample(text, "membrane_endpoint_regenerations_total", { outcome: "success" })).toBe(1);
    expect(sample(text, "membrane_identity")).toBeGreaterThanOrEqual(1);
    expect(sample(text, "membrane_policy")).toBe(1);
    expect(sample(text, "membrane_forwarder_packets_total")).toBeGreaterThanOrEqual(8);
    expect(promtool(text)).toBe("");
  });
});

describeIf("a running operator's metrics endpoint", promtoolMissing, () => {
  const dir = mkdtempSync(join(tmpdir(), "membrane-ob-operator-metrics-"));
  let child: ReturnType<typeof spawn> | undefined;
  afterAll(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child!.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it("exports its kvstore calls; promtool is clean", async () => {
    const port = await freePort();
    child = spawn(process.execPath, [CLI, "operator", "--kvstore", `embedded:${join(dir, "store")}`, "--metrics", `127.0.0.1:${port}`, "--lease-ttl", "2"], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout!.on("data", (c) => (out += c));
    child.stderr!.on("data", (c) => (out += c));
    const text = await waitFor("the operator's scrape with a lease granted", async () => {
      const res = await fetch(`http://127.0.0.1:${port}/metrics`).catch(() => undefined);
      const t = res && (await res.text());
      return t && (sample(t, "membrane_kvstore_operations_duration_seconds_count", { action: "GrantLease", kind: "lease", outcome: "success", scope: "/" }) ?? 0) >= 1 && t;
    }, { detail: () => out });
    expect(out).toContain(`membrane operator: metrics on http://127.0.0.1:${port}/metrics`);
    expect(promtool(text)).toBe("");
  });
});
