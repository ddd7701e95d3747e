/**
 * Policy end to end: bpf_lxc on the host side of two pods' veths (the node
 * forwarding between them, as in parity.test.ts), its policy maps programmed
 * by PolicyDatapathWriter from the policy engine (endpoints, a YAML policy).
 * pod2 admits TCP from pod1 on one port and sends nothing new itself
 * (`egress: []`): the allowed connection works both ways (pod2's answers
 * pass by conntrack), a connection to another port and a connection pod2
 * opens fail, and the drop counter for "policy denied" rises in the right
 * direction. Namespaces mbr-pol-<pid>-*, removed afterwards.
 */
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { AttachedDatapath } from "../../host/kernel/attached.js";
import { KernelPolicyTables } from "../../host/kernel/policy-tables.js";
import { BpfMap } from "../../host/bpf/map.js";
import { DropReason, decodeMetricsValue } from "../../host/generated/layout.js";
import type { DatapathOptions } from "../../host/config.js";
import { FORWARD_RULE_PREF, FORWARD_TABLE, ForwarderTopology } from "../../host/demo/topology.js";
import { demoUnavailable } from "../../host/demo/requirements.js";
import { ip } from "../../host/sys/netns/iproute2.js";
import { withNetns } from "../../host/sys/netns/enter.js";
import { parsePolicyText } from "../../host/policy/document.js";
import { parseEndpoint } from "../../host/policy/endpoint.js";
import { PolicyEngine } from "../../host/policy/engine.js";
import { PolicyDatapathWriter } from "../../host/policy/datapath-writer.js";
import { e2eUnavailable } from "./netns.js";
import { describeIf } from "../support/describe-if.js";


const PREFIX = `mbr-pol-${process.pid}`;
const PIN_ROOT = `/sys/fs/bpf/${PREFIX}`;
const OPTIONS: DatapathOptions = { conntrack: { tcpEntries: 1024, otherEntries: 1024 }, policy: { endpoints: 8, ipcache: 32, entries: 64 } };
const ALLOWED = 7901, OTHER = 7902, BACK = 7903;
const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: pod2}
spec:
  endpointSelector: {matchLabels: {app: pod2}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: pod1}}]
    toPorts: [{ports: [{port: "${ALLOWED}", protocol: TCP}]}]
  egress: []
`;

function policyDrops(pinDir: string, direction: "egress" | "ingress"): bigint {
  const map = BpfMap.openPinned(join(pinDir, "metrics"));
  try {
    const key = new Uint8Array(4);
    new DataView(key.buffer).setUint32(0, (DropReason.DROP_POLICY << 1) | (direction === "ingress" ? 1 : 0), true);
    const value = map.lookup(key);
    return value ? map.perCpuValues(value).reduce((s, cpu) => s + decodeMetricsValue(cpu).packets, 0n) : 0n;
  } finally {
    map.close();
  }
}

describeIf("policy through bpf_lxc between two pods", demoUnavailable() ?? e2eUnavailable(), () => {
  let topo: ForwarderTopology | undefined;
  const attached: AttachedDatapath[] = [];

  async function teardown(): Promise<string[]> {
    const problems: string[] = [];
    for (const d of attached.splice(0)) {
      try {
        withNetns(topo!.node, () => d.detach());
      } catch (err) {
        problems.push(`detach: ${(err as Error).message}`);
      }
    }
    if (topo) problems.push(...(await topo.teardown()));
    rmSync(PIN_ROOT, { recursive: true, force: true });
    return problems;
  }

  beforeAll(async () => {
    try {
      topo = await ForwarderTopology.create(PREFIX);
      await topo.resolveNeighbours();
      const t = topo;
      // the node forwards between the veths itself (no TUN)
      for (const e of Object.values(t.endpoints)) {
        for (const family of [4, 6] as const) ip("-n", t.node, `-${family}`, "rule", "del", "iif", e.nodeIf, "lookup", String(FORWARD_TABLE), "pref", String(FORWARD_RULE_PREF));
      }
      const engine = new PolicyEngine();
      for (const [id, e] of [[1, t.pod1], [2, t.pod2]] as const) {
        engine.upsertEndpoint(parseEndpoint({ id, labels: [`app=${e.name}`], ipv4: e.v4, ipv6: e.v6 }, `endpoint ${e.name}`));
      }
      engine.importPolicies(parsePolicyText(POLICY, "pod2.yaml"));
      for (const e of [t.pod1, t.pod2]) {
        attached.push(withNetns(t.node, () => AttachedDatapath.attach({ ifname: e.nodeIf, point: "endpoint", options: OPTIONS, pinDir: `${PIN_ROOT}/${e.name}` })));
      }
      // each endpoint program has its own maps: the writer programs both alike
      new PolicyDatapathWriter(attached.map((a) => new KernelPolicyTables(a.object))).applyChange(engine.snapshot());
    } catch (err) {
      await teardown();
      throw err;
    }
  }, 30_000);

  afterAll(async () => {
    const problems = await teardown();
    const left = [...(topo?.leftovers() ?? []), ...[PIN_ROOT].filter((p) => existsSync(p))];
    if (problems.length || left.length) throw new Error(`cleanup incomplete: ${[...problems, ...left].join("; ")}`);
  }, 30_000);

  it.each([4, 6] as const)("IPv%i: pod1 -> pod2 on the allowed port connects, and pod2's answers pass", async (family) => {
    const t = topo!;
    const dst = family === 4 ? t.pod2.v4 : t.pod2.v6;
    const pin = `${PIN_ROOT}/pod2`;
    const before = [policyDrops(pin, "ingress"), policyDrops(pin, "egress")];
    const ok = t.agent(t.pod2, ["tcp-server", dst, ALLOWED]);
    await ok.ready();
    const message = `allowed over IPv${family}`;
    const [c, s] = await Promise.all([
      t.agent(t.pod1, ["tcp-client", dst, ALLOWED, message]).result<{ reply: string }>(8_000),
      ok.result<{ received: string }>(8_000),
    ]);
    expect(c.reply).toBe(`echo:${message}`);
    expect(s.received).toBe(message);
    expect([policyDrops(pin, "ingress"), policyDrops(pin, "egress")]).toEqual(before);
  }, 20_000);

  it("a new connection to another port, and one pod2 opens, fail with 'policy denied' drops", async () => {
    const t = topo!;
    const pins = { pod1: `${PIN_ROOT}/pod1`, pod2: `${PIN_ROOT}/pod2` };
    const before = { ingress: policyDrops(pins.pod2, "ingress"), egress: policyDrops(pins.pod2, "egress") };
    const servers = [t.agent(t.pod2, ["tcp-server", t.pod2.v4, OTHER], { limitMs: 3000 }), t.agent(t.pod1, ["tcp-server", t.pod1.v4, BACK], { limitMs: 3000 })];
    await Promise.all(servers.map((s) => s.ready()));
    const attempts = await Promise.allSettled([
      t.agent(t.pod1, ["tcp-client", t.pod2.v4, OTHER, "denied"], { limitMs: 2000 }).result(5_000),
      t.agent(t.pod2, ["tcp-client", t.pod1.v4, BACK, "denied"], { limitMs: 2000 }).result(5_000),
    ]);
    // no answer at all (a SYN dropped, not refused): the clients give up at their limit
    expect(attempts.map((a) => (a.status === "rejected" ? /tcp-client: gave up after 2000 ms/.test(String(a.reason)) : a.status))).toEqual([true, true]);
    // pod2's ingress dropped pod1's SYNs (to_container), pod2's egress its own (from_container)
    expect(policyDrops(pins.pod2, "ingress")).toBeGreaterThan(before.ingress);
    expect(policyDrops(pins.pod2, "egress")).toBeGreaterThan(before.egress);
    // pod1 enforces nothing: it dropped nothing for policy
    expect([policyDrops(pins.pod1, "ingress"), policyDrops(pins.pod1, "egress")]).toEqual([0n, 0n]);
  }, 20_000);

  it("removes the namespaces, the veths and the pins", async () => {
    expect(await teardown()).toEqual([]);
    expect(topo!.leftovers()).toEqual([]);
    expect(existsSync(PIN_ROOT)).toBe(false);
  }, 30_000);
});
