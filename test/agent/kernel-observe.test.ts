/**
 * End to end: what `membrane agent --datapath bpf` (dist/, as shipped) shows
 * of itself. The agent runs in the "node" namespace with one endpoint behind
 * a veth and a policy that allows one TCP port and denies another; then
 *   - `membrane monitor --json` on <state-dir>/agent.sock (0600) shows the
 *     denied flow's drops from the kernel's ring buffer, with the reason and
 *     the endpoint, and nothing of the allowed flow in drop-only mode;
 *   - a scrape of --metrics counts those drops in drop_count_total (read from
 *     the pinned maps) and passes promtool;
 *   - `membrane status` shows the bpf agent, its endpoint and the drops.
 * Namespaces "mbr-e2e-bo<pid>-pod|peer", pins under /sys/fs/bpf/membrane-test-bo<pid>.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startAgent } from "../../host/demo/agents.js";
import { NetnsProcess } from "../../host/sys/netns/process.js";
import { describeIf } from "../support/describe-if.js";
import { monitorChild } from "../monitor/monitor-child.js";
import { waitFor } from "../support/wait-for.js";
import { Topology, e2eUnavailable } from "../e2e/netns.js";
import { freePort, promtool, promtoolMissing, sum } from "../metrics/support.js";

const ADDRS = { pod4: "10.254.7.2", peer4: "10.254.7.1", pod6: "fd00:2547::2", peer6: "fd00:2547::1" };
const TAG = `bo${process.pid}`;
const PIN_DIR = `/sys/fs/bpf/membrane-test-${TAG}`;
const ALLOWED = 7300, DENIED = 7301;
const NS = "k8s:io.kubernetes.pod.namespace=default";
const MAIN = resolve("dist/host/cli/main.js");

const STATE = {
  conntrack: { tcpEntries: 4096, otherEntries: 4096 },
  identities: [{ id: 1001, labels: ["k8s:app=pod", NS] }],
  endpoints: [{ id: 41, labels: ["app=pod"], ipv4: ADDRS.pod4, ipv6: ADDRS.pod6, mac: "02:00:00:00:00:29" }],
  policies: [{
    apiVersion: "cilium.io/v2", kind: "CiliumNetworkPolicy", metadata: { name: "pod-out" },
    spec: { endpointSelector: { matchLabels: { app: "pod" } }, egress: [{ toCIDR: [`${ADDRS.peer4}/32`], toPorts: [{ ports: [{ port: String(ALLOWED), protocol: "TCP" }] }] }] },
  }],
};

const monitor = monitorChild;

describeIf("membrane agent --datapath bpf: monitor, metrics and status", e2eUnavailable() ?? promtoolMissing, () => {
  const topo = new Topology(TAG, ADDRS);
  const work = mkdtempSync(join(tmpdir(), "membrane-bo-"));
  const stateDir = join(work, "run");
  const socket = join(stateDir, "agent.sock");
  const processes: NetnsProcess[] = [];
  const monitors: ReturnType<typeof monitor>[] = [];
  let port: number;
  let agent: NetnsProcess;

  const client = (args: Array<string | number>) => startAgent(topo.lab, topo.pod, args, { limitMs: 60_000 });
  const tryDenied = () => expect(client(["tcp-client", ADDRS.peer4, DENIED, "denied"]).result(15_000)).rejects.toThrow(/ETIMEDOUT|gave up|timed out|exited|did not finish/);
  /** A scrape from inside the node namespace: the agent's loopback endpoint is that namespace's loopback. */
  const scrape = () => {
    const r = spawnSync("nsenter", [`--net=/run/netns/${topo.peer}`, process.execPath, "-e",
      `fetch("http://127.0.0.1:${port}/metrics").then((r) => r.text()).then((t) => process.stdout.write(t))`], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`scrape: ${r.stderr}`);
    return r.stdout;
  };

  beforeAll(async () => {
    topo.create();
    await topo.waitUp();
    const server = startAgent(topo.lab, topo.peer, ["tcp-echo", ADDRS.peer4, ALLOWED], { limitMs: 120_000 });
    processes.push(server);
    await server.ready();
    writeFileSync(join(work, "state.json"), JSON.stringify(STATE));
    port = await freePort();
    // nsenter --net, not ip netns exec: the latter remounts /sys and hides the bpffs the pins live on.
    const child = spawn("nsenter", [`--net=/run/netns/${topo.peer}`, process.execPath, MAIN, "agent", "--datapath", "bpf",
      "--config", join(work, "state.json"), "--state-dir", stateDir, "--pin-dir", PIN_DIR, "--templates-dir", join(work, "templates"),
      "--endpoint-device", `41=${topo.lxc}`, "--metrics", `127.0.0.1:${port}`], { stdio: ["ignore", "pipe", "pipe"] });
    agent = new NetnsProcess(child, "membrane agent --datapath bpf");
    processes.push(agent);
    await agent.waitLine("kernel datapath running", (l) => typeof l === "string" && /kernel datapath running/.test(l), 90_000);
  }, 150_000);

  afterAll(async () => {
    for (const m of monitors) if (m.child.exitCode === null) { m.child.kill("SIGTERM"); await m.exited; }
    for (const p of processes) p.kill();
    await Promise.all(processes.map((p) => p.exited));
    await topo.destroy();
    rmSync(PIN_DIR, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  }, 30_000);

  it("membrane monitor --json: the denied flow's drops from the ring buffer, with reason and endpoint; nothing of the allowed", async () => {
    expect(statSync(socket).mode & 0o777).toBe(0o600);
    const m = monitor(["--type", "drop", "--json", "--socket", socket, "--count", "1"]);
    monitors.push(m);
    await waitFor("the monitor listening", () => m.err.includes("listening"), { detail: () => m.err });
    expect(await client(["tcp-stream", ADDRS.peer4, ALLOWED, 2, 10]).result(15_000)).toMatchObject({ sent: 2, echoed: 2 });
    await tryDenied();
    expect(await m.exited, m.err).toBe(0);
    const events = m.out.map((l) => JSON.parse(l));
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ type: "drop", engine: "kernel", reason: "DROP_POLICY", direction: "EGRESS", endpoint: 41, src: ADDRS.pod4, dst: ADDRS.peer4, dport: DENIED, proto: "TCP" });
  }, 60_000);

  it("a scrape counts the policy drops from the pinned maps and passes promtool", async () => {
    const text = scrape();
    expect(sum(text, "membrane_drop_count_total", { reason: "Policy denied", direction: "EGRESS" })).toBeGreaterThanOrEqual(1);
    expect(sum(text, "membrane_forward_count_total")).toBeGreaterThan(0);
    expect(sum(text, "membrane_bpf_map_ops_total")).toBeGreaterThan(0);
    // The endpoint's identity and the one of the policy's toCIDR prefix; the one rule.
    expect(text).toMatch(/^membrane_identity 2$/m);
    expect(text).toMatch(/^membrane_policy 1$/m);
    expect(promtool(text)).toBe("");
  }, 30_000);

  it("membrane status shows the bpf agent, its endpoint and the drops", async () => {
    const read = () => spawnSync(process.execPath, [MAIN, "status", "--state-dir", stateDir, "--json"], { encoding: "utf8" });
    await waitFor("a status with the drops", () => {
      const r = read();
      return r.status === 0 && (JSON.parse(r.stdout) as { counters: { drops: { reason: string }[] } }).counters.drops.some((d) => d.reason === "DROP_POLICY");
    }, { detail: () => read().stderr });
    const s = JSON.parse(read().stdout);
    expect(s).toMatchObject({ datapath: "bpf", kernel: { pinDir: PIN_DIR, endpoints: [{ id: 41, device: topo.lxc }] } });
    const text = spawnSync(process.execPath, [MAIN, "status", "--state-dir", stateDir], { encoding: "utf8" });
    expect(text.status, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/datapath bpf, maps pinned in /);
    expect(text.stdout).toMatch(new RegExp(`endpoints: 41 on ${topo.lxc} \\(programs \\d+,\\d+\\)`));
    expect(text.stdout).toMatch(/[1-9]\d* dropped/);
  }, 30_000);
});
