/**
 * End to end: a templated bpf_lxc on a real veth (host/kernel/templates/
 * endpoint-programs.ts), with real TCP through it. The endpoint is added
 * (policy decides on its own constants: the endpoint maps do not hold it),
 * relabelled under a running TCP stream (instantiated again without a
 * compile, filters replaced in place: the stream loses nothing), handed to a
 * "restarted agent" (a new cache and endpoint set on the same dirs, under
 * the same stream), and removed (filters gone).
 *
 * The namespaces are this test's own: "mbr-e2e-tpl<pid>-pod" and "-peer"
 * (Topology from kernel-endpoint.test.ts, a distinct tag), the pins under
 * /sys/fs/bpf/membrane-test-tpl<pid>.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { TemplateCache } from "../../host/kernel/templates/cache.js";
import { TemplatedEndpoints } from "../../host/kernel/templates/endpoint-programs.js";
import { KernelPolicyTables } from "../../host/kernel/policy-tables.js";
import { PolicyDatapathWriter } from "../../host/policy/datapath-writer.js";
import { BpfMap } from "../../host/bpf/map.js";
import { DropReason, decodeMetricsValue } from "../../host/generated/layout.js";
import type { DatapathOptions } from "../../host/config.js";
import { e2eUnavailable, Topology, tc } from "./netns.js";
import { describeIf } from "../support/describe-if.js";

const ADDRS = { pod4: "10.251.0.2", peer4: "10.251.0.1", pod6: "fd00:251::2", peer6: "fd00:251::1" };
const TAG = `tpl${process.pid}`;
const PIN_DIR = `/sys/fs/bpf/membrane-test-${TAG}`;
const OPTIONS: DatapathOptions = { conntrack: { tcpEntries: 4096, otherEntries: 4096 } };
const PEER_IDENTITY = 2000;
const ALLOWED = 7000, NOT_ALLOWED = 7001;
const DROP_POLICY_EGRESS_SLOT = (DropReason.DROP_POLICY << 1) | 0; // metrics slot: reason << 1 | direction (egress 0)
/** Egress policy enforced (the pod may only reach the peer on ALLOWED), ingress open. */
const SHAPE = { enforceIngress: false, enforceEgress: true };

function policyDrops(pinDir: string): bigint {
  const map = BpfMap.openPinned(join(pinDir, "metrics"));
  try {
    const key = new Uint8Array(4);
    new DataView(key.buffer).setUint32(0, DROP_POLICY_EGRESS_SLOT, true);
    const v = map.lookup(key);
    return v ? map.perCpuValues(v).reduce((n, cpu) => n + decodeMetricsValue(cpu).packets, 0n) : 0n;
  } finally {
    map.close();
  }
}

describeIf("templated bpf_lxc on a veth: add, relabel, restart, remove", e2eUnavailable(), () => {
  const topo = new Topology(TAG, ADDRS);
  const work = mkdtempSync(join(tmpdir(), "membrane-e2e-tpl-"));
  const templatesDir = join(work, "templates");
  let cache: TemplateCache;
  let eps: TemplatedEndpoints;
  const endpoint = (identity: number) => ({ id: 31, identity, ipv4: ADDRS.pod4, ipv6: ADDRS.pod6, mac: "02:00:00:00:00:1f", ifindex: 1 });
  const device = () => ({ ifname: topo.lxc, netns: topo.peer });
  const servers: Array<{ kill(): void }> = [];

  beforeAll(async () => {
    topo.create();
    await topo.waitUp();
    await topo.agent(topo.pod, ["ping", ADDRS.peer4, 1, 1]).result(8_000);
    cache = new TemplateCache({ dir: templatesDir });
    eps = new TemplatedEndpoints({ cache, options: OPTIONS, pinDir: PIN_DIR });
  }, 60_000);

  /** An echo server on the peer (the agents live 8 s at most: one per test). */
  async function serve(port: number): Promise<void> {
    const s = topo.agent(topo.peer, ["tcp-echo", ADDRS.peer4, port]);
    servers.push(s);
    await s.ready();
  }

  afterAll(async () => {
    servers.forEach((s) => s.kill());
    eps?.release();
    await topo.destroy();
    rmSync(PIN_DIR, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  }, 20_000);

  it("add: attached from the template; policy decides on the endpoint's constants", async () => {
    const r = await eps.upsert(endpoint(1001), device(), SHAPE);
    expect(r).toMatchObject({ compiled: true, replaced: false });
    const shown = tc("-n", topo.peer, "filter", "show", "dev", topo.lxc, "ingress");
    expect(shown).toMatch(new RegExp(`from_container.* id ${r.progIds[0]}\\b`));
    // The node's maps, through the pins every instance shares: no endpoint entry at all.
    const object = eps.endpoints.get(31)!.object;
    const writer = new PolicyDatapathWriter([new KernelPolicyTables(object)]);
    writer.setIpcache([{ cidr: `${ADDRS.peer4}/32`, identity: PEER_IDENTITY }]);
    writer.applyPolicy({ recomputed: [31], changes: new Map([[31, { add: [{ identity: PEER_IDENTITY, port: ALLOWED, proto: 6, direction: "egress", deny: false }], remove: [] }]]) });
    expect(new KernelPolicyTables(object).dump("endpoints4")).toEqual([]);
    await serve(ALLOWED);
    await serve(NOT_ALLOWED);

    const ok = await topo.agent(topo.pod, ["tcp-stream", ADDRS.peer4, ALLOWED, 2, 10]).result(8_000);
    expect(ok).toMatchObject({ sent: 2, echoed: 2 });
    const before = policyDrops(PIN_DIR);
    await expect(topo.agent(topo.pod, ["tcp-stream", ADDRS.peer4, NOT_ALLOWED, 1, 10]).result(10_000)).rejects.toThrow();
    expect(policyDrops(PIN_DIR)).toBeGreaterThan(before);
    expect(cache.find(r.key).endpoints.map((e) => e.id)).toEqual([31]);
  }, 30_000);

  it("relabel and agent restart under a TCP stream: no compile, filters replaced in place, nothing lost", async () => {
    const lines = 40;
    await serve(ALLOWED);
    const client = topo.agent(topo.pod, ["tcp-stream", ADDRS.peer4, ALLOWED, lines, 60]);
    await client.waitLine("connected", (l) => (l as { connected?: boolean }).connected === true);
    await client.waitLine("3 echoes", (l) => (l as { echo?: number }).echo === 3, 5_000);
    const compiles = cache.stats.compiles;
    const ids = new Set<number>();
    for (const identity of [1002, 1003]) {
      const r = await eps.upsert(endpoint(identity), device(), SHAPE);
      expect(r).toMatchObject({ compiled: false, replaced: true });
      r.progIds.forEach((id) => ids.add(id));
      const rodata = [...eps.endpoints.get(31)!.object.maps.values()].find((m) => m.internal && m.name.endsWith(".rodata"))!;
      const offset = (await cache.get("bpf_lxc", SHAPE)).layout.offsets.LXC_SECID;
      const secid = new DataView(rodata.lookup(new Uint8Array(4))!.buffer).getUint32(offset, true);
      expect(secid).toBe(identity);
    }
    expect(cache.stats.compiles).toBe(compiles);
    expect(ids.size).toBe(4); // two new programs per relabel
    // The "agent" restarts: lets go without detaching; the next one replaces in place.
    eps.release();
    cache = new TemplateCache({ dir: templatesDir });
    eps = new TemplatedEndpoints({ cache, options: OPTIONS, pinDir: PIN_DIR });
    const r = await eps.upsert(endpoint(1003), device(), SHAPE);
    expect(r.compiled).toBe(false); // found on disk
    expect(tc("-n", topo.peer, "filter", "show", "dev", topo.lxc, "egress")).toMatch(new RegExp(`to_container.* id ${r.progIds[1]}\\b`));
    const done = await client.result<{ sent: number; echoed: number }>(10_000);
    expect(done).toMatchObject({ sent: lines, echoed: lines });
  }, 30_000);

  it("remove: filters detached, the endpoint forgotten by its template", async () => {
    const key = eps.endpoints.get(31)!.key;
    expect(eps.remove(31)).toBe(true);
    expect(tc("-n", topo.peer, "filter", "show", "dev", topo.lxc, "ingress")).not.toMatch(/from_container/);
    expect(cache.find(key).endpoints).toEqual([]);
    // Nothing polices the pod any more: the port without a rule answers.
    await serve(NOT_ALLOWED);
    const ok = await topo.agent(topo.pod, ["tcp-stream", ADDRS.peer4, NOT_ALLOWED, 2, 10]).result(8_000);
    expect(ok).toMatchObject({ sent: 2, echoed: 2 });
  }, 30_000);
});
