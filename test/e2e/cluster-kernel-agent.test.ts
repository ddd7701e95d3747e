/**
 * End to end: `membrane agent --datapath bpf --kvstore embedded:... --node
 * n1` (dist/, as shipped) with `membrane operator` on the same embedded
 * store, the node a namespace, two pods behind veths named to the agent with
 * --endpoint-device NAMESPACE/POD=IFNAME. `membrane apply` stores the pods
 * and a NetworkPolicy (egress denied to every pod, TCP to the node allowed
 * for app=frontend): frontend's connection goes through, other's is dropped
 * by its templated program. Relabelling other app=frontend (one `membrane
 * apply`) flips the verdict: its program re-instantiated, no compile. The
 * agent restarted under a TCP stream: the stream loses nothing, the new agent
 * compiles nothing and replaces the programs in place. A pod deleted
 * (`membrane delete`): its filters detached.
 *
 * Dual-stack: each pod has an IPv4 and an IPv6 address, every verdict is
 * checked over both. "other" is stored before "frontend", so it gets
 * endpoint id 1 and frontend 2; a restarted agent lists the pods in key
 * order (frontend first) and must still give each its id (from the pinned
 * records). `membrane monitor` shows other's policy drop; `membrane status`
 * lists the endpoints; the pinned endpoint records carry each pod's MAC (its
 * veth peer's). A pod deleted while no agent runs: the next agent
 * reconciles (records gone, the program left on its veth detached).
 *
 * Namespaces "bc<pid>-node|a|b", pins under /sys/fs/bpf/membrane-test-bc<pid>.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { callAgent } from "../../host/api/client.js";
import { startAgent } from "../../host/demo/agents.js";
import { NetnsLab } from "../../host/sys/netns/lab.js";
import { NetnsProcess } from "../../host/sys/netns/process.js";
import { describeIf } from "../support/describe-if.js";
import { waitFor } from "../support/wait-for.js";
import { e2eUnavailable, tc } from "./netns.js";

const TAG = `bc${process.pid % 100000}`;
const PIN_DIR = `/sys/fs/bpf/membrane-test-${TAG}`;
const MAIN = resolve("dist/host/cli/main.js");
const PORT = 7300;
const PODS = {
  a: { name: "frontend", ip: "10.254.1.2", node: "10.254.1.1", ip6: "fd00:254:1::2", node6: "fd00:254:1::1", dev: `${TAG}a` },
  b: { name: "other", ip: "10.254.2.2", node: "10.254.2.1", ip6: "fd00:254:2::2", node6: "fd00:254:2::1", dev: `${TAG}b` },
};
type PodSpec = (typeof PODS)["a"];

const pod = (p: PodSpec, app: string) =>
  `apiVersion: v1\nkind: Pod\nmetadata: { name: ${p.name}, namespace: default, labels: { app: ${app} } }\nspec: { nodeName: n1 }\nstatus: { podIP: ${p.ip}, podIPs: [{ ip: ${p.ip} }, { ip: ${p.ip6} }] }\n`;
const POLICY = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: no-egress, namespace: default }
spec: { podSelector: {}, policyTypes: [Egress] }
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: frontend-to-node, namespace: default }
spec:
  podSelector: { matchLabels: { app: frontend } }
  policyTypes: [Egress]
  egress:
    - to: [{ ipBlock: { cidr: 10.254.0.0/16 } }, { ipBlock: { cidr: "fd00:254::/32" } }]
      ports: [{ port: ${PORT}, protocol: TCP }]
`;

interface EndpointRow { pod: string; id: number; identity: number; enforceEgress: boolean; entries: number }

describeIf("membrane agent --datapath bpf in cluster mode: kvstore pods and NetworkPolicy on templated programs", e2eUnavailable(), () => {
  const lab = new NetnsLab(TAG);
  const node = `${lab.prefix}-node`;
  const work = mkdtempSync(join(tmpdir(), "membrane-e2e-bc-"));
  const kvstore = `embedded:${join(work, "kv")}`;
  const stateDir = join(work, "run");
  const procs: NetnsProcess[] = [];
  let agent: NetnsProcess;

  const membrane = (...args: string[]) => {
    const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`membrane ${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
  };
  const apply = (file: string, text: string) => {
    writeFileSync(join(work, file), text);
    membrane("apply", "-f", join(work, file), "--kvstore", kvstore);
  };
  const applyPods = (otherApp: string) => apply("pods.yaml", `${pod(PODS.a, "frontend")}---\n${pod(PODS.b, otherApp)}`);
  const agentSocket = () => join(stateDir, "agent.sock");
  const endpoints = async () => (await callAgent<EndpointRow[]>(agentSocket(), "GET", "/v1/endpoints")).body;
  const progIds = (dev: string) => [...tc("-n", node, "filter", "show", "dev", dev, "ingress").matchAll(/ id (\d+)/g)].map((m) => Number(m[1]));
  const connect = (ns: string, to: string) => startAgent(lab, ns, ["tcp-stream", to, PORT, 2, 10], { limitMs: 10_000 }).result(15_000);
  /** The pod's TCP to the node over IPv4 and IPv6: both echoed, or both refused. */
  const bothFamilies = async (p: PodSpec, allowed: boolean) => {
    for (const to of [p.node, p.node6]) {
      if (allowed) expect(await connect(`${lab.prefix}-${p.name}`, to), `${p.name} -> ${to}`).toMatchObject({ sent: 2, echoed: 2 });
      else await expect(connect(`${lab.prefix}-${p.name}`, to), `${p.name} -> ${to}`).rejects.toThrow();
    }
  };
  const idsByPod = async () => Object.fromEntries((await endpoints()).map((r) => [r.pod, r.id]));
  const lines = () => agent.lines.filter((l): l is string => typeof l === "string");

  const startMembraneAgent = () => {
    const p = new NetnsProcess(spawn("nsenter", [`--net=/run/netns/${node}`, process.execPath, MAIN, "agent", "--datapath", "bpf",
      "--kvstore", kvstore, "--node", "n1", "--node-ip", "192.0.2.1", "--pod-cidr", "10.254.0.0/16", "--pod-cidr", "fd00:254::/32", "--state-dir", stateDir,
      "--pin-dir", PIN_DIR, "--templates-dir", join(work, "templates"), "--external-device", `${TAG}x`,
      "--endpoint-device", `default/${PODS.a.name}=${PODS.a.dev}`, "--endpoint-device", `default/${PODS.b.name}=${PODS.b.dev}`], { stdio: ["ignore", "pipe", "pipe"] }), "membrane agent --datapath bpf (cluster)");
    procs.push(p);
    return p;
  };

  beforeAll(async () => {
    lab.addNamespace("node");
    for (const p of Object.values(PODS)) {
      const ns = lab.addNamespace(p.name);
      lab.addVeth({ ns: node, name: p.dev }, { ns, name: "eth0" });
      lab.addAddress(ns, "eth0", `${p.ip}/24`);
      lab.addAddress(node, p.dev, `${p.node}/24`);
      lab.addAddress(ns, "eth0", `${p.ip6}/64`, { nodad: true });
      lab.addAddress(node, p.dev, `${p.node6}/64`, { nodad: true });
      lab.linkUp(ns, "eth0");
      lab.linkUp(node, p.dev);
      await lab.waitUp(ns, "eth0", 5_000);
      await lab.waitUp(node, p.dev, 5_000);
      for (const addr of [p.node, p.node6]) {
        const server = startAgent(lab, node, ["tcp-echo", addr, PORT], { limitMs: 180_000 });
        procs.push(server);
        await server.ready();
      }
    }
    // The node's "external device": a veth whose other end stays in the node (no dummy module here).
    lab.addVeth({ ns: node, name: `${TAG}x` }, { ns: node, name: `${TAG}y` });
    lab.linkUp(node, `${TAG}x`);
    const operator = new NetnsProcess(spawn(process.execPath, [MAIN, "operator", "--kvstore", kvstore, "--lease-ttl", "5"], { stdio: ["ignore", "pipe", "pipe"] }), "membrane operator");
    procs.push(operator);
    agent = startMembraneAgent();
    await agent.waitLine("kernel datapath running", (l) => typeof l === "string" && /kernel datapath running/.test(l), 60_000);
  }, 120_000);

  afterAll(async () => {
    for (const p of procs) p.kill();
    await Promise.all(procs.map((p) => p.exited));
    await lab.teardown();
    rmSync(PIN_DIR, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  }, 30_000);

  it("applies the pods and the NetworkPolicy from the kvstore: frontend allowed, other denied", async () => {
    // The policy first, so that each pod's first program already enforces egress (one template shape, one compile).
    apply("policy.yaml", POLICY);
    await waitFor("the operator's policy records at the agent", async () => {
      const st = await callAgent<{ counts: { policies: number } }>(agentSocket(), "GET", "/v1/status").catch(() => undefined);
      return (st?.body.counts.policies ?? 0) >= 2;
    }, { timeoutMs: 60_000 });
    // other stored first: endpoint 1; frontend 2 (a restart lists frontend first).
    apply("other.yaml", pod(PODS.b, "other"));
    await waitFor("other's endpoint", async () => (await endpoints().catch(() => [])).length === 1, { timeoutMs: 60_000 });
    applyPods("other");
    const eps = await waitFor("both pods' endpoints enforcing egress, frontend with its entry", async () => {
      const rows = await endpoints().catch(() => []);
      const ok = rows.length === 2 && rows.every((r) => r.enforceEgress) && rows.find((r) => r.pod === `default/${PODS.a.name}`)!.entries > 0;
      return ok && rows;
    }, { timeoutMs: 60_000 });
    await waitFor("both veths' programs", () => progIds(PODS.a.dev).length === 1 && progIds(PODS.b.dev).length === 1, { timeoutMs: 30_000 });
    expect(eps.map((r) => r.pod).sort()).toEqual([`default/${PODS.a.name}`, `default/${PODS.b.name}`]);
    expect(await idsByPod()).toEqual({ [`default/${PODS.a.name}`]: 2, [`default/${PODS.b.name}`]: 1 });
    // The monitor listens before other's denied connections: their drops are policy drops.
    const monitor = spawn(process.execPath, [MAIN, "monitor", "--socket", agentSocket(), "--type", "drop", "--json", "--count", "1", "--seconds", "30"], { stdio: ["ignore", "pipe", "pipe"] });
    let monitored = "";
    monitor.stdout.on("data", (b: Buffer) => (monitored += b.toString()));
    const monitorDone = new Promise<number | null>((r) => monitor.on("exit", r));
    await new Promise((r) => setTimeout(r, 500)); // the monitor's subscription reaches the agent (events before it are not shown)
    await bothFamilies(PODS.a, true);
    await bothFamilies(PODS.b, false);
    await monitorDone;
    expect(monitored).toMatch(/Policy denied|DROP_POLICY/i);
    expect(monitored).toContain(PODS.b.ip);
    // membrane status: the kernel datapath's endpoints and their programs.
    const status = JSON.parse(membrane("status", "--state-dir", stateDir, "--json")) as { datapath: string; kernel: { endpoints: { id: number; device: string }[] } };
    expect(status.datapath).toBe("bpf");
    expect(status.kernel.endpoints.map((e) => `${e.id}=${e.device}`).sort()).toEqual([`1=${PODS.b.dev}`, `2=${PODS.a.dev}`]);
    // The pods' MACs (their veth peers'), not zero, in the pinned endpoint records.
    const listed = membrane("bpf", "endpoint", "list", "--pin-dir", PIN_DIR, "--templates-dir", join(work, "templates"));
    for (const p of Object.values(PODS)) {
      const mac = /link\/ether ([0-9a-f:]{17})/.exec(spawnSync("ip", ["-n", `${lab.prefix}-${p.name}`, "link", "show", "eth0"], { encoding: "utf8" }).stdout)![1];
      expect(listed, listed).toContain(mac);
    }
    expect(lines().join("\n"), agent.stderr).toMatch(/bpf_host on /);
    expect(lines().filter((l) => / instantiated \(compiled\)/.test(l))).toHaveLength(1); // one shape, compiled once for both pods
  }, 150_000);

  it("a label change flips the verdict: other's program re-instantiated without a compile", async () => {
    const before = progIds(PODS.b.dev);
    const compiled = lines().filter((l) => /template\(s\) compiled in all/.test(l)).at(-1)!.match(/(\d+) template\(s\) compiled in all/)![1];
    const seen = agent.lines.length;
    applyPods("frontend");
    const line = await agent.waitLine("other re-instantiated", (l) => agent.lines.indexOf(l) >= seen && typeof l === "string" && new RegExp(`on ${PODS.b.dev}: .*replaced in place`).test(l), 60_000);
    expect(line).toMatch(/instantiated \(no compile\)/);
    expect(line).toContain(`${compiled} template(s) compiled in all`);
    expect(progIds(PODS.b.dev)).not.toEqual(before);
    await bothFamilies(PODS.b, true);
    await bothFamilies(PODS.a, true);
  }, 150_000);

  it("restarts under TCP streams (IPv4 and IPv6): the streams survive, endpoint ids kept, the programs replaced in place, nothing compiled", async () => {
    const ids = await idsByPod();
    const stream = startAgent(lab, `${lab.prefix}-${PODS.a.name}`, ["tcp-stream", PODS.a.node, PORT, 200, 50], { limitMs: 60_000 });
    const stream6 = startAgent(lab, `${lab.prefix}-${PODS.a.name}`, ["tcp-stream", PODS.a.node6, PORT, 200, 50], { limitMs: 60_000 });
    await stream.waitLine("3 echoes", (l) => (l as { echo?: number }).echo === 3, 15_000);
    await stream6.waitLine("3 echoes", (l) => (l as { echo?: number }).echo === 3, 15_000);
    const kept = progIds(PODS.a.dev);
    agent.child.kill("SIGTERM");
    expect(await agent.exited).toBe(0);
    expect(lines().join("\n")).toMatch(/programs left attached for the next agent/);
    expect(progIds(PODS.a.dev)).toEqual(kept); // no agent runs; the programs do
    agent = startMembraneAgent();
    const joined = await agent.waitLine("joined", (l) => typeof l === "string" && /node n1 joined/.test(l), 60_000);
    expect(joined).toMatch(/2 endpoint program\(s\), 0 template\(s\) compiled/);
    expect(joined).toContain(`default/${PODS.a.name}=2`);
    expect(await idsByPod()).toEqual(ids);
    expect(stream.running).toBe(true); // the restart happened while it was still sending
    expect(progIds(PODS.a.dev)).toHaveLength(1);
    expect(progIds(PODS.a.dev)).not.toEqual(kept);
    expect(await stream.result(60_000)).toMatchObject({ sent: 200, echoed: 200 });
    expect(await stream6.result(60_000)).toMatchObject({ sent: 200, echoed: 200 });
  }, 150_000);

  it("a pod deleted with membrane delete: its filters detached, the other pod's stay", async () => {
    writeFileSync(join(work, "other.yaml"), pod(PODS.b, "frontend"));
    membrane("delete", "-f", join(work, "other.yaml"), "--kvstore", kvstore);
    await waitFor("other's filters detached", () => progIds(PODS.b.dev).length === 0, { timeoutMs: 60_000 });
    await agent.waitLine("the removal said", (l) => typeof l === "string" && /endpoint \d+ removed: programs detached/.test(l), 10_000);
    expect(progIds(PODS.a.dev)).toHaveLength(1);
    await bothFamilies(PODS.a, true);
  }, 120_000);

  it("a pod deleted while no agent runs: the next agent reconciles, its records and left programs removed", async () => {
    agent.child.kill("SIGTERM");
    expect(await agent.exited).toBe(0);
    expect(progIds(PODS.a.dev)).toHaveLength(1); // left running for the next agent
    writeFileSync(join(work, "frontend.yaml"), pod(PODS.a, "frontend"));
    membrane("delete", "-f", join(work, "frontend.yaml"), "--kvstore", kvstore);
    agent = startMembraneAgent();
    const reconciled = await agent.waitLine("reconciled", (l) => typeof l === "string" && /reconciled with the cluster/.test(l), 60_000);
    expect(reconciled).toMatch(/endpoint\(s\) [\d,]*2[\d,]* gone/);
    expect(progIds(PODS.a.dev)).toHaveLength(0);
    const listed = membrane("bpf", "endpoint", "list", "--pin-dir", PIN_DIR, "--templates-dir", join(work, "templates"));
    expect(listed).not.toContain(PODS.a.ip);
  }, 120_000);
});
