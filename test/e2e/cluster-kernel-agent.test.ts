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
const PODS = { a: { name: "frontend", ip: "10.254.1.2", node: "10.254.1.1", dev: `${TAG}a` }, b: { name: "other", ip: "10.254.2.2", node: "10.254.2.1", dev: `${TAG}b` } };

const pod = (name: string, ip: string, app: string) =>
  `apiVersion: v1\nkind: Pod\nmetadata: { name: ${name}, namespace: default, labels: { app: ${app} } }\nspec: { nodeName: n1 }\nstatus: { podIP: ${ip}, podIPs: [{ ip: ${ip} }] }\n`;
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
    - to: [{ ipBlock: { cidr: 10.254.0.0/16 } }]
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
  const applyPods = (otherApp: string) => apply("pods.yaml", `${pod(PODS.a.name, PODS.a.ip, "frontend")}---\n${pod(PODS.b.name, PODS.b.ip, otherApp)}`);
  const agentSocket = () => join(stateDir, "agent.sock");
  const endpoints = async () => (await callAgent<EndpointRow[]>(agentSocket(), "GET", "/v1/endpoints")).body;
  const progIds = (dev: string) => [...tc("-n", node, "filter", "show", "dev", dev, "ingress").matchAll(/ id (\d+)/g)].map((m) => Number(m[1]));
  const connect = (ns: string, to: string) => startAgent(lab, ns, ["tcp-stream", to, PORT, 2, 10], { limitMs: 10_000 }).result(15_000);
  const lines = () => agent.lines.filter((l): l is string => typeof l === "string");

  const startMembraneAgent = () => {
    const p = new NetnsProcess(spawn("nsenter", [`--net=/run/netns/${node}`, process.execPath, MAIN, "agent", "--datapath", "bpf",
      "--kvstore", kvstore, "--node", "n1", "--node-ip", "192.0.2.1", "--pod-cidr", "10.254.0.0/16", "--state-dir", stateDir,
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
      lab.linkUp(ns, "eth0");
      lab.linkUp(node, p.dev);
      await lab.waitUp(ns, "eth0", 5_000);
      await lab.waitUp(node, p.dev, 5_000);
      const server = startAgent(lab, node, ["tcp-echo", p.node, PORT], { limitMs: 180_000 });
      procs.push(server);
      await server.ready();
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
    applyPods("other");
    const eps = await waitFor("both pods' endpoints enforcing egress, frontend with its entry", async () => {
      const rows = await endpoints().catch(() => []);
      const ok = rows.length === 2 && rows.every((r) => r.enforceEgress) && rows.find((r) => r.pod === `default/${PODS.a.name}`)!.entries > 0;
      return ok && rows;
    }, { timeoutMs: 60_000 });
    await waitFor("both veths' programs", () => progIds(PODS.a.dev).length === 1 && progIds(PODS.b.dev).length === 1, { timeoutMs: 30_000 });
    expect(eps.map((r) => r.pod).sort()).toEqual([`default/${PODS.a.name}`, `default/${PODS.b.name}`]);
    expect(await connect(`${lab.prefix}-${PODS.a.name}`, PODS.a.node)).toMatchObject({ sent: 2, echoed: 2 });
    await expect(connect(`${lab.prefix}-${PODS.b.name}`, PODS.b.node)).rejects.toThrow();
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
    expect(await connect(`${lab.prefix}-${PODS.b.name}`, PODS.b.node)).toMatchObject({ sent: 2, echoed: 2 });
    expect(await connect(`${lab.prefix}-${PODS.a.name}`, PODS.a.node)).toMatchObject({ sent: 2, echoed: 2 });
  }, 150_000);

  it("restarts under a TCP stream: the stream survives, the programs are replaced in place, nothing compiled", async () => {
    const stream = startAgent(lab, `${lab.prefix}-${PODS.a.name}`, ["tcp-stream", PODS.a.node, PORT, 200, 50], { limitMs: 60_000 });
    await stream.waitLine("3 echoes", (l) => (l as { echo?: number }).echo === 3, 15_000);
    const kept = progIds(PODS.a.dev);
    agent.child.kill("SIGTERM");
    expect(await agent.exited).toBe(0);
    expect(lines().join("\n")).toMatch(/programs left attached for the next agent/);
    expect(progIds(PODS.a.dev)).toEqual(kept); // no agent runs; the programs do
    agent = startMembraneAgent();
    const joined = await agent.waitLine("joined", (l) => typeof l === "string" && /node n1 joined/.test(l), 60_000);
    expect(joined).toMatch(/2 endpoint program\(s\), 0 template\(s\) compiled/);
    expect(stream.running).toBe(true); // the restart happened while it was still sending
    expect(progIds(PODS.a.dev)).toHaveLength(1);
    expect(progIds(PODS.a.dev)).not.toEqual(kept);
    expect(await stream.result(60_000)).toMatchObject({ sent: 200, echoed: 200 });
  }, 150_000);

  it("a pod deleted with membrane delete: its filters detached, the other pod's stay", async () => {
    writeFileSync(join(work, "other.yaml"), pod(PODS.b.name, PODS.b.ip, "frontend"));
    membrane("delete", "-f", join(work, "other.yaml"), "--kvstore", kvstore);
    await waitFor("other's filters detached", () => progIds(PODS.b.dev).length === 0, { timeoutMs: 60_000 });
    await agent.waitLine("the removal said", (l) => typeof l === "string" && /endpoint \d+ removed: programs detached/.test(l), 10_000);
    expect(progIds(PODS.a.dev)).toHaveLength(1);
    expect(await connect(`${lab.prefix}-${PODS.a.name}`, PODS.a.node)).toMatchObject({ sent: 2, echoed: 2 });
  }, 120_000);
});
