/**
 * End to end: `membrane agent --datapath bpf` (dist/, as shipped) run from a
 * state file in the "node" namespace (peer), the pod behind a veth:
 *   - the endpoint gets its templated program on the host-side veth, bpf_host
 *     goes on the external device, policy from the state file decides real TCP;
 *   - the state file is edited: the endpoint relabelled (re-instantiated, the
 *     compiler not run again), a policy port added (maps only);
 *   - the agent is restarted under a TCP stream, a UDP request/reply sequence
 *     and a ping sequence: no byte, datagram or echo lost (UDP counts its
 *     retransmissions, ping fails on any echo unanswered for 3 s), the
 *     programs replaced in place, no compile;
 *   - the endpoint removed from the file: its filters detached, its map
 *     record gone, the maps still pinned.
 *
 * The agent runs under `nsenter --net` rather than `ip netns exec`: the
 * latter remounts /sys, hiding the bpffs the pins (kept across the restart)
 * live on. Namespaces "mbr-e2e-ka<pid>-pod|peer", pins under
 * /sys/fs/bpf/membrane-test-ka<pid>.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { BpfMap } from "../../host/bpf/map.js";
import { startAgent } from "../../host/demo/agents.js";
import { NetnsProcess } from "../../host/sys/netns/process.js";
import { describeIf } from "../support/describe-if.js";
import { waitFor } from "../support/wait-for.js";
import { Topology, e2eUnavailable, ip, tc } from "./netns.js";

const ADDRS = { pod4: "10.253.0.2", peer4: "10.253.0.1", pod6: "fd00:253::2", peer6: "fd00:253::1" };
const TAG = `ka${process.pid}`;
const PIN_DIR = `/sys/fs/bpf/membrane-test-${TAG}`;
const EXT = `kaext${process.pid}`.slice(0, 15);
const TCP_PORT = 7200, LATER_PORT = 7201, UDP_PORT = 7202;
const NS = "k8s:io.kubernetes.pod.namespace=default";
const MAIN = resolve("dist/host/cli/main.js");

function stateFile(labels: string[], ports: number[], withEndpoint = true): object {
  return {
    conntrack: { tcpEntries: 4096, otherEntries: 4096 },
    // Fixed numbers, as the state module writes them: a relabel is then a different identity, not 256 again.
    identities: [{ id: 1001, labels: ["k8s:app=pod", NS] }, { id: 1002, labels: ["k8s:app=pod", "k8s:tier=front", NS] }],
    endpoints: withEndpoint ? [{ id: 41, labels, ipv4: ADDRS.pod4, ipv6: ADDRS.pod6, mac: "02:00:00:00:00:29" }] : [],
    policies: [{
      apiVersion: "cilium.io/v2", kind: "CiliumNetworkPolicy", metadata: { name: "pod-out" },
      spec: {
        endpointSelector: { matchLabels: { app: "pod" } },
        egress: [
          { toCIDR: [`${ADDRS.peer4}/32`], toPorts: [{ ports: [...ports.map((p) => ({ port: String(p), protocol: "TCP" })), { port: String(UDP_PORT), protocol: "UDP" }] }] },
          { toCIDR: [`${ADDRS.peer4}/32`], toPorts: [{ ports: [{ port: "0", protocol: "ICMP" }] }] },
        ],
      },
    }],
  };
}

describeIf("membrane agent --datapath bpf: from the state file, edits, restart under traffic, removal", e2eUnavailable(), () => {
  const topo = new Topology(TAG, ADDRS);
  const work = mkdtempSync(join(tmpdir(), "membrane-e2e-ka-"));
  const state = join(work, "state.json");
  const agents: NetnsProcess[] = [];
  const servers: NetnsProcess[] = [];

  /** Written whole and renamed into place, as the state module does: the agent never reads half a file. */
  const writeState = (doc: object) => {
    writeFileSync(`${state}.new`, JSON.stringify(doc));
    renameSync(`${state}.new`, state);
  };
  const startMembraneAgent = () => {
    const child = spawn("nsenter", [`--net=/run/netns/${topo.peer}`, process.execPath, MAIN, "agent", "--datapath", "bpf",
      "--config", state, "--state-dir", join(work, "run"), "--pin-dir", PIN_DIR, "--templates-dir", join(work, "templates"),
      "--endpoint-device", `41=${topo.lxc}`, "--external-device", EXT], { stdio: ["ignore", "pipe", "pipe"] });
    const p = new NetnsProcess(child, "membrane agent --datapath bpf");
    agents.push(p);
    return p;
  };
  const waitRunning = (p: NetnsProcess) => p.waitLine<string>("kernel datapath running", (l) => typeof l === "string" && /kernel datapath running/.test(l), 60_000);
  const progIds = (dev: string, dir: "ingress" | "egress") => [...tc("-n", topo.peer, "filter", "show", "dev", dev, dir).matchAll(/ id (\d+)/g)].map((m) => Number(m[1]));
  const serve = async (args: Array<string | number>) => {
    const s = startAgent(topo.lab, topo.peer, args, { limitMs: 120_000 });
    servers.push(s);
    await s.ready();
  };
  const client = (args: Array<string | number>) => startAgent(topo.lab, topo.pod, args, { limitMs: 60_000 });
  const endpointRecords = () => {
    const m = BpfMap.openPinned(join(PIN_DIR, "endpoints4"));
    try {
      return m.dump().length;
    } finally {
      m.close();
    }
  };
  let agent: NetnsProcess;
  /** Waits for the agent to say it applied an edit, with everything it said on failure. */
  const waitApplied = async (what: string, from: number, re: RegExp) => {
    try {
      await agent.waitLine(what, (l) => agent.lines.indexOf(l) >= from && typeof l === "string" && re.test(l), 60_000);
    } catch (err) {
      throw new Error(`${(err as Error).message}\nagent said:\n${agent.lines.slice(from).join("\n")}`);
    }
    return agent.lines.slice(from).filter((l): l is string => typeof l === "string").join("\n");
  };

  beforeAll(async () => {
    topo.create();
    // The node's "external device": a veth whose other end stays in the node too (no dummy module here).
    ip("-n", topo.peer, "link", "add", EXT, "type", "veth", "peer", "name", `${EXT}p`.slice(0, 15));
    ip("-n", topo.peer, "link", "set", EXT, "up");
    await topo.waitUp();
    await topo.agent(topo.pod, ["ping", ADDRS.peer4, 1, 1]).result(8_000);
    await serve(["tcp-echo", ADDRS.peer4, TCP_PORT]);
    await serve(["tcp-echo", ADDRS.peer4, LATER_PORT]);
    await serve(["udp-echo", ADDRS.peer4, UDP_PORT]);
    writeState(stateFile(["app=pod"], [TCP_PORT]));
  }, 60_000);

  afterAll(async () => {
    for (const p of [...agents, ...servers]) p.kill();
    await Promise.all(agents.map((p) => p.exited));
    await topo.destroy();
    rmSync(PIN_DIR, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  }, 30_000);

  it("starts from the state file: the endpoint's program on its veth, bpf_host on the external device, policy on real TCP", async () => {
    agent = startMembraneAgent();
    const line = await waitRunning(agent);
    expect(line, agent.stderr).toMatch(/1 endpoint\(s\), 1 template\(s\) compiled, bpf_host on /);
    expect(agent.lines.join("\n")).toMatch(/kernel \S+: bpf_loop \(Linux 5\.17\+, .*\): (yes|no)/);
    expect(progIds(topo.lxc, "ingress")).toHaveLength(1);
    expect(progIds(topo.lxc, "egress")).toHaveLength(1);
    expect(progIds(EXT, "ingress")).toHaveLength(1);
    expect(endpointRecords()).toBe(1);
    expect(await client(["tcp-stream", ADDRS.peer4, TCP_PORT, 2, 10]).result(15_000)).toMatchObject({ sent: 2, echoed: 2 });
    await expect(topo.agent(topo.pod, ["tcp-client", ADDRS.peer4, LATER_PORT, "denied"]).result(15_000)).rejects.toThrow(/ETIMEDOUT|gave up|timed out|exited/);
  }, 150_000);

  it("applies state file edits: a relabel re-instantiates without compiling, a policy port added opens it", async () => {
    const before = progIds(topo.lxc, "ingress");
    const seen = agent.lines.length;
    writeState(stateFile(["app=pod", "tier=front"], [TCP_PORT]));
    const applied = await waitApplied("the relabel applied", seen, /applied .*: 1 endpoint\(s\) changed/);
    expect(applied).not.toMatch(/warning/);
    expect(applied).toMatch(/endpoint 41 on \S+: template \w+ instantiated \(no compile\), programs \d+,\d+ replaced in place/);
    expect(applied).toMatch(/0 template\(s\) compiled/);
    expect(progIds(topo.lxc, "ingress")).not.toEqual(before);

    const seen2 = agent.lines.length;
    writeState(stateFile(["app=pod", "tier=front"], [TCP_PORT, LATER_PORT]));
    await waitApplied("the policy edit applied", seen2, /applied .*: 0 endpoint\(s\) changed, 0 removed, 0 template/);
    expect(await client(["tcp-stream", ADDRS.peer4, LATER_PORT, 2, 10]).result(15_000)).toMatchObject({ sent: 2, echoed: 2 });
  }, 150_000);

  it("restarts under TCP, UDP and ping without losing a byte, a datagram or an echo; programs replaced in place, no compile", async () => {
    const stream = client(["tcp-stream", ADDRS.peer4, TCP_PORT, 300, 50]);
    const udp = client(["udp-client", ADDRS.peer4, UDP_PORT, 600, 20]);
    const ping = client(["ping", ADDRS.peer4, 4242, 300, 40]);
    await stream.waitLine("3 echoes", (l) => (l as { echo?: number }).echo === 3, 15_000);
    const kept = progIds(topo.lxc, "ingress");
    agent.child.kill("SIGTERM");
    expect(await agent.exited).toBe(0);
    expect(agent.lines.join("\n")).toMatch(/programs left attached for the next agent/);
    expect(progIds(topo.lxc, "ingress")).toEqual(kept); // no agent runs; the programs do

    agent = startMembraneAgent();
    const line = await waitRunning(agent);
    expect(line).toMatch(/1 endpoint\(s\), 0 template\(s\) compiled/);
    // The restart happened while all three were still sending: otherwise this proves nothing.
    expect([stream.running, udp.running, ping.running]).toEqual([true, true, true]);
    expect(progIds(topo.lxc, "ingress")).toHaveLength(1);
    expect(progIds(topo.lxc, "ingress")).not.toEqual(kept);

    expect(await stream.result(60_000)).toMatchObject({ sent: 300, echoed: 300 });
    const u = await udp.result<{ sent: number; replies: number }>(60_000);
    expect(u.replies).toBe(600);
    expect(u.sent).toBe(600); // not one request had to be sent again
    expect(await ping.result(60_000)).toMatchObject({ replies: 300 });
  }, 200_000);

  it("removes the endpoint from the file: filters detached, its record gone, the maps still pinned", async () => {
    const seen = agent.lines.length;
    writeState(stateFile(["app=pod", "tier=front"], [TCP_PORT, LATER_PORT], false));
    await waitApplied("the removal applied", seen, /applied .*: 0 endpoint\(s\) changed, 1 removed/);
    expect(progIds(topo.lxc, "ingress")).toEqual([]);
    expect(progIds(topo.lxc, "egress")).toEqual([]);
    await waitFor("the endpoint record deleted", () => endpointRecords() === 0, { timeoutMs: 5_000 });
    agent.child.kill("SIGTERM");
    expect(await agent.exited).toBe(0);
    expect(progIds(EXT, "ingress")).toHaveLength(1); // bpf_host stays for the next agent
  }, 120_000);
});
