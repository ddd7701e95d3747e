// A running `membrane agent --metrics` (state-file mode, in a namespace of
// this test's own): after known traffic a scrape returns what the datapath
// decided (forwards, policy drops by reason and direction), the bootstrap and
// the endpoints generated; promtool is clean; the endpoint answers only on
// the address it was given. `membrane operator --metrics` exports its
// kvstore calls the same way.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { run } from "../../host/cli/main.js";
import { NetnsLab, sweep } from "../../host/sys/netns/lab.js";
import type { NetnsProcess } from "../../host/sys/netns/process.js";
import { spawn } from "node:child_process";
import { agentUnavailable, CLI } from "../agent/agent-lab.js";
import { describeIf } from "../support/describe-if.js";
import { waitFor } from "../support/wait-for.js";
import { freePort, promtool, promtoolMissing, sample } from "./support.js";

const SRC = "10.91.0.1";
const DST = "10.92.0.2";
const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: src}
spec:
  endpointSelector: {matchLabels: {app: src}}
  egress:
  - toCIDR: [10.92.0.0/24]
    toPorts: [{ports: [{port: "7000", protocol: UDP}]}]
`;

/** A state file with endpoint 1 (app=src at SRC) allowed UDP 7000 toward 10.92.0.0/24 only. */
export async function policyStateFile(dir: string): Promise<string> {
  const state = join(dir, "state.json");
  writeFileSync(state, JSON.stringify({ conntrack: { tcpEntries: 4096, otherEntries: 4096 }, policy: { endpoints: 16, ipcache: 64, entries: 256 } }));
  const policyFile = join(dir, "policy.yaml");
  writeFileSync(policyFile, POLICY);
  for (const args of [["endpoint", "add", "1", "--labels", "app=src", "--ipv4", SRC], ["policy", "import", policyFile]]) {
    const err: string[] = [];
    const code = await run([...args, "--config", state], { out: () => {}, err: (l) => err.push(l) });
    if (code !== 0) throw new Error(`${args.join(" ")}: ${err.join("\n")}`);
  }
  return state;
}

/** A namespace with SRC on a veth end, ready for an agent routing 10.92.0.0/24 into its device. */
export async function policyLab(prefix: string): Promise<{ lab: NetnsLab; ns: string }> {
  const lab = new NetnsLab(prefix);
  await sweep(prefix);
  const ns = lab.addNamespace("ns");
  lab.addVeth({ ns, name: "obsrc0" }, { ns, name: "obsrc1" });
  lab.addAddress(ns, "obsrc0", `${SRC}/24`);
  lab.linkUp(ns, "obsrc0");
  lab.linkUp(ns, "obsrc1");
  return { lab, ns };
}

/** Sends `count` UDP datagrams from SRC to DST:port inside `ns`; resolves once they are sent. */
export function sendUdp(ns: string, port: number, count: number): void {
  const script = `const s=require("node:dgram").createSocket("udp4");s.bind(0,"${SRC}",async()=>{for(let i=0;i<${count};i++)await new Promise((r)=>s.send(Buffer.from("membrane-ob"),${port},"${DST}",r));s.close();});`;
  execFileSync("ip", ["netns", "exec", ns, process.execPath, "-e", script], { stdio: "pipe" });
}

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
    agent = lab.spawn(ns, [process.execPath, CLI, "agent", "--datapath", "tun", "--device", "obm0", "--state-dir", join(dir, "state"), "--config", state, "--route", "10.92.0.0/24", "--metrics", "127.0.0.1:9962"], { label: "agent" });
    await agent.waitLine("forwarding", (l) => typeof l === "string" && l.startsWith("membrane agent: forwarding on "), 30_000);
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
