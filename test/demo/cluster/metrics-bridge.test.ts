// The cluster demo's metrics bridge: an HTTP endpoint on 127.0.0.1 inside a namespace of the test's
// own (where an agent's --metrics listens) reached from the host at the address given, port + i for
// node i; ports past 65535 refused before anything starts.
import net from "node:net";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AGENT_METRICS_PORT, MetricsBridge, nodeMetricsAddresses } from "../../../host/demo/cluster/metrics-bridge.js";
import { NetnsLab, sweep } from "../../../host/sys/netns/lab.js";
import { agentUnavailable } from "../../agent/agent-lab.js";
import { describeIf } from "../../support/describe-if.js";

describe("nodeMetricsAddresses", () => {
  it("gives node i the port given + i, and refuses ports past 65535", () => {
    expect(nodeMetricsAddresses({ host: "127.0.0.1", port: 9962 }, ["n1", "n2"])).toEqual([
      { node: "n1", address: { host: "127.0.0.1", port: 9962 } },
      { node: "n2", address: { host: "127.0.0.1", port: 9963 } },
    ]);
    expect(() => nodeMetricsAddresses({ host: "127.0.0.1", port: 65535 }, ["n1", "n2"])).toThrow("--metrics: the cluster demo uses ports 65535..65536 (one per node), past 65535");
  });
});

const freePort = () => new Promise<number>((resolve) => {
  const s = net.createServer().listen(0, "127.0.0.1", () => {
    const port = (s.address() as net.AddressInfo).port;
    s.close(() => resolve(port));
  });
});

describeIf("the cluster demo's metrics bridge", agentUnavailable(), () => {
  const prefix = `cgmb${process.pid % 10000}`;
  const lab = new NetnsLab(prefix);
  const dir = mkdtempSync(join(tmpdir(), "membrane-cg-metrics-"));
  const bridge = new MetricsBridge();

  beforeAll(async () => {
    await sweep(prefix);
    for (const n of ["n1", "n2"]) {
      const ns = lab.addNamespace(n);
      // Stands in for the agent's endpoint: answers with its namespace's name on the namespace's loopback.
      const server = `require("node:http").createServer((q, r) => r.end("served in ${ns}\\n")).listen(${AGENT_METRICS_PORT}, "127.0.0.1", () => console.log(JSON.stringify({ ready: true })))`;
      await lab.spawn(ns, [process.execPath, "-e", server], { label: `${n}: http` }).ready(8_000);
    }
  }, 30_000);

  afterAll(async () => {
    bridge.close();
    await lab.teardown();
    rmSync(dir, { recursive: true, force: true });
  });

  it("brings each namespace's 127.0.0.1 endpoint to the host on its own port, through a 0600 socket", async () => {
    const base = await freePort();
    const at = nodeMetricsAddresses({ host: "127.0.0.1", port: base }, ["n1", "n2"]);
    await bridge.expose(lab, dir, at.map((a) => ({ ...a, ns: `${prefix}-${a.node}` })));
    for (const a of at) {
      const r = await fetch(`http://127.0.0.1:${a.address.port}/metrics`);
      expect(await r.text()).toBe(`served in ${prefix}-${a.node}\n`);
      expect(statSync(join(dir, `metrics-${a.node}.sock`)).mode & 0o777).toBe(0o600);
    }
  }, 30_000);
});
