/**
 * End to end: the agent's kernel datapath (host/agent/kernel-datapath.ts) on
 * a real veth, with real TCP: started from an engine change (endpoint,
 * ipcache, policy), the endpoint relabelled under a TCP stream, the agent
 * restarted under another stream (programs kept, then replaced in place by
 * the new agent), then stopped with its programs detached.
 *
 * Namespaces of its own: "mbr-e2e-kag<pid>-pod" and "-peer" (Topology from
 * kernel-endpoint.test.ts), pins under /sys/fs/bpf/membrane-test-kag<pid>.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { KernelAgentDatapath } from "../../host/kernel/agent-datapath.js";
import type { EngineChange } from "../../host/policy/engine.js";
import type { EndpointRecord } from "../../host/policy/types.js";
import { resolveOptions } from "../../host/config.js";
import { BpfMap } from "../../host/bpf/map.js";
import { e2eUnavailable, Topology, tc } from "./netns.js";
import { describeIf } from "../support/describe-if.js";

const ADDRS = { pod4: "10.252.0.2", peer4: "10.252.0.1", pod6: "fd00:252::2", peer6: "fd00:252::1" };
const TAG = `kag${process.pid}`;
const PIN_DIR = `/sys/fs/bpf/membrane-test-${TAG}`;
const OPTIONS = resolveOptions({ conntrack: { tcpEntries: 4096, otherEntries: 4096 } });
const PEER = 2000, ALLOWED = 7100, NOT_ALLOWED = 7101;

const endpoint = (identity: number): EndpointRecord => ({
  id: 41, identity, ipv4: ADDRS.pod4, ipv6: ADDRS.pod6, mac: "02:00:00:00:00:29", ifindex: 1, enforceIngress: false, enforceEgress: true,
});

function initial(): EngineChange {
  return {
    endpoints: { upsert: [endpoint(1001)], remove: [] },
    ipcache: { upsert: [{ cidr: `${ADDRS.peer4}/32`, identity: PEER }, { cidr: `${ADDRS.pod4}/32`, identity: 1001 }], remove: [] },
    policy: { recomputed: [41], changes: new Map([[41, { add: [{ identity: PEER, port: ALLOWED, proto: 6, direction: "egress" as const, deny: false }], remove: [] }]]) },
    entriesComputed: 1,
  };
}

describeIf("agent kernel datapath: start, relabel, restart, stop", e2eUnavailable(), () => {
  const topo = new Topology(TAG, ADDRS);
  const work = mkdtempSync(join(tmpdir(), "membrane-e2e-kag-"));
  const templatesDir = join(work, "templates");
  const devices = () => new Map([[41, { ifname: topo.lxc, netns: topo.peer }]]);
  let agent: KernelAgentDatapath | undefined;
  const servers: Array<{ kill(): void }> = [];
  const serve = async (port: number) => {
    const s = topo.agent(topo.peer, ["tcp-echo", ADDRS.peer4, port]);
    servers.push(s);
    await s.ready();
  };
  const progIds = (dir: "ingress" | "egress") => [...tc("-n", topo.peer, "filter", "show", "dev", topo.lxc, dir).matchAll(/ id (\d+)/g)].map((m) => Number(m[1]));

  beforeAll(async () => {
    topo.create();
    await topo.waitUp();
    await topo.agent(topo.pod, ["ping", ADDRS.peer4, 1, 1]).result(8_000);
  }, 30_000);

  afterAll(async () => {
    servers.forEach((s) => s.kill());
    agent?.stop({ keepPrograms: false });
    await topo.destroy();
    rmSync(PIN_DIR, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  }, 20_000);

  it("starts: the endpoint's program attached, the maps written, policy enforced on real TCP", async () => {
    agent = await KernelAgentDatapath.start({ options: OPTIONS, pinDir: PIN_DIR, templatesDir, devices: devices() }, initial());
    expect(progIds("ingress")).toHaveLength(1);
    expect(progIds("egress")).toHaveLength(1);
    expect(agent.cache.stats.compiles).toBe(2); // the maps holder's template and the endpoint's shape (egress enforced only)
    const eps = BpfMap.openPinned(join(PIN_DIR, "endpoints4"));
    try {
      expect(eps.dump()).toHaveLength(1);
    } finally {
      eps.close();
    }
    await serve(ALLOWED);
    await serve(NOT_ALLOWED);
    expect(await topo.agent(topo.pod, ["tcp-stream", ADDRS.peer4, ALLOWED, 2, 10]).result(8_000)).toMatchObject({ sent: 2, echoed: 2 });
    await expect(topo.agent(topo.pod, ["tcp-stream", ADDRS.peer4, NOT_ALLOWED, 1, 10]).result(10_000)).rejects.toThrow(/ETIMEDOUT|gave up|timed out/);
  }, 40_000);

  it("relabels and restarts under TCP streams without a compile and without losing a byte", async () => {
    await serve(ALLOWED);
    const lines = 40;
    const client = topo.agent(topo.pod, ["tcp-stream", ADDRS.peer4, ALLOWED, lines, 60]);
    await client.waitLine("3 echoes", (l) => (l as { echo?: number }).echo === 3, 5_000);
    const before = progIds("ingress");
    const results = await agent!.apply({
      endpoints: { upsert: [endpoint(1002)], remove: [] },
      ipcache: { upsert: [{ cidr: `${ADDRS.pod4}/32`, identity: 1002 }], remove: [] },
      policy: { recomputed: [], changes: new Map() },
      entriesComputed: 0,
    });
    expect(results.get(41)).toMatchObject({ compiled: false, replaced: true });
    expect(progIds("ingress")).not.toEqual(before);
    // Restart: the old agent lets go with its programs attached; the new one replaces them in place.
    agent!.stop({ keepPrograms: true });
    agent = undefined;
    expect(progIds("ingress")).toHaveLength(1);
    const kept = progIds("ingress");
    agent = await KernelAgentDatapath.start({ options: OPTIONS, pinDir: PIN_DIR, templatesDir, devices: devices() }, { ...initial(), endpoints: { upsert: [endpoint(1002)], remove: [] } });
    expect(agent.cache.stats.compiles).toBe(0);
    expect(progIds("ingress")).toHaveLength(1);
    expect(progIds("ingress")).not.toEqual(kept);
    expect(await client.result(10_000)).toMatchObject({ sent: lines, echoed: lines });
  }, 40_000);

  it("stops with its programs detached; the maps stay pinned", () => {
    agent!.stop({ keepPrograms: false });
    agent = undefined;
    expect(progIds("ingress")).toEqual([]);
    expect(progIds("egress")).toEqual([]);
    const ct = BpfMap.openPinned(join(PIN_DIR, "ct_tcp4"));
    try {
      expect(ct.dump().length).toBeGreaterThan(0);
    } finally {
      ct.close();
    }
  });
});
