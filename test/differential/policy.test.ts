// Policy through both datapaths (Wasm and BPF_PROG_TEST_RUN), written by one
// PolicyDatapathWriter with identical records: the shared policy steps and a
// seeded random policy world, compared packet by packet (verdict, drop reason,
// conntrack result, output bytes), then every conntrack table (the remote
// identity included) and every policy table (hit counters included).
import { afterAll, expect, test } from "vitest";
import { createPair, runDifferential, type DiffEvent, type Pair } from "./harness.js";
import { kernelUnavailable } from "./kernel-available.js";
import { seededRandom } from "../support/seeded-random.js";
import { ethernet, packet4, packet6 } from "../../host/packet/build.js";
import { PolicyDatapathWriter } from "../../host/policy/datapath-writer.js";
import { POLICY_TABLE_NAMES } from "../../host/policy/tables.js";
import type { EndpointRecord, IpcacheRecord, PolicyEntry, PolicyProto } from "../../host/policy/types.js";
import { ENDPOINTS, IPCACHE, POLICY_A, policyDiff, policySteps, reusedTupleCase, type PolicyStep } from "../fixtures/policy-scenarios.js";
import { describeIf } from "../support/describe-if.js";

const frame = (packet: Uint8Array) => ethernet({ etherType: packet[0] >> 4 === 4 ? 0x0800 : 0x86dd }, packet);
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

/** The first policy table whose records differ between the datapaths, or undefined. */
function comparePolicyTables(pair: Pair): string | undefined {
  const w = pair.wasm.policyTables(), k = pair.kernel.policyTables();
  for (const table of POLICY_TABLE_NAMES) {
    const rows = (s: typeof w | typeof k) => s.dump(table).map(([key, value]) => `${hex(key)}=${hex(value)}`).sort();
    const a = rows(w), b = rows(k);
    const onlyWasm = a.filter((r) => !b.includes(r)), onlyKernel = b.filter((r) => !a.includes(r));
    if (onlyWasm.length || onlyKernel.length) return `${table}: only in Wasm ${onlyWasm.join(" ")}; only in the kernel ${onlyKernel.join(" ")}`;
  }
  return undefined;
}

async function policyPair(): Promise<{ pair: Pair; writer: PolicyDatapathWriter }> {
  const pair = await createPair({ conntrack: { tcpEntries: 8192, otherEntries: 8192 }, fragments: { entries: 64 }, policy: { endpoints: 64, ipcache: 1024, entries: 4096 } });
  return { pair, writer: new PolicyDatapathWriter([pair.wasm.policyTables(), pair.kernel.policyTables()]) };
}

describeIf("differential: policy (Wasm vs kernel)", kernelUnavailable(), () => {
  const pairs: Pair[] = [];
  afterAll(() => pairs.forEach((p) => p.close()));

  for (const family of [4, 6] as const) {
    test(`the policy steps, IPv${family}`, async () => {
      const { pair, writer } = await policyPair();
      pairs.push(pair);
      writer.setEndpoints(ENDPOINTS);
      writer.setIpcache(IPCACHE);
      writer.applyPolicy(policyDiff(POLICY_A));
      expect(comparePolicyTables(pair)).toBeUndefined();
      const events: DiffEvent[] = policySteps(family).map((s) => ({ kind: "packet", frame: frame(s.packet), direction: s.direction, now: 1000, note: s.note }));
      const result = runDifferential(pair, events, 1);
      expect(result.divergence).toBeUndefined();
      expect(result.packets).toBe(events.length);
      expect(comparePolicyTables(pair)).toBeUndefined();
      // The comparison saw what the steps expect, not two datapaths agreeing on nothing.
      expect(pair.kernel.counters().drops.find((d) => d.reason === "DROP_POLICY")?.packets).toBeGreaterThan(0);
    });
  }

  for (const family of [4, 6] as const) {
    test(`a 5-tuple reused after its rule is removed, IPv${family}: both judge it by the current policy`, async () => {
      const { pair, writer } = await policyPair();
      pairs.push(pair);
      writer.setEndpoints(ENDPOINTS);
      writer.setIpcache(IPCACHE);
      writer.applyPolicy(policyDiff(POLICY_A));
      const c = reusedTupleCase(family);
      const run = (steps: PolicyStep[]) => {
        const events: DiffEvent[] = steps.map((s) => ({ kind: "packet", frame: frame(s.packet), direction: s.direction, now: 1000, note: s.note }));
        const result = runDifferential(pair, events, 1);
        expect(result.divergence).toBeUndefined();
        expect(result.packets).toBe(events.length);
      };
      run(c.before);
      writer.applyPolicy(c.change);
      run(c.after);
      writer.applyPolicy(c.restore);
      run(c.again);
      expect(comparePolicyTables(pair)).toBeUndefined();
      // Three refused SYNs on the reused tuple, in both datapaths.
      expect(pair.kernel.counters().drops.filter((d) => d.reason === "DROP_POLICY").reduce((n, d) => n + d.packets, 0)).toBe(3);
    });
  }

  test("a seeded random policy world: 4000 new flows, policy rewritten between rounds", { timeout: 120_000 }, async () => {
    const { pair, writer } = await policyPair();
    pairs.push(pair);
    const rand = seededRandom(5150);
    const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)];
    // Addresses around a few bases so prefixes nest and endpoints sit inside them.
    const v4 = (a: number, b: number) => `10.${a}.${b}.${1 + Math.floor(rand() * 6)}`;
    const v6 = (a: number, b: number) => `fd00:${a}:${b}::${1 + Math.floor(rand() * 6)}`;
    const addrs = { 4: [] as string[], 6: [] as string[] };
    for (let a = 0; a < 3; a++) for (let b = 0; b < 3; b++) for (let i = 0; i < 3; i++) { addrs[4].push(v4(a, b)); addrs[6].push(v6(a, b)); }
    addrs[4].push("8.8.4.4", "1.1.1.1");
    addrs[6].push("2001:db8::1", "2001:db8::2");
    const uniq = (xs: string[]) => [...new Set(xs)];
    addrs[4] = uniq(addrs[4]); addrs[6] = uniq(addrs[6]);
    const identities = [1, 2, 1001, 1002, 1003, 2000, 2001, 2002];
    const ipcache: IpcacheRecord[] = [];
    for (let a = 0; a < 3; a++) {
      ipcache.push({ cidr: `10.${a}.0.0/16`, identity: pick(identities) }, { cidr: `fd00:${a}::/32`, identity: pick(identities) });
      for (let b = 0; b < 3; b++) if (rand() < 0.6) ipcache.push({ cidr: `10.${a}.${b}.0/24`, identity: pick(identities) }, { cidr: `fd00:${a}:${b}::/48`, identity: pick(identities) });
    }
    for (const f of [4, 6] as const) for (const a of addrs[f]) if (rand() < 0.3 && !a.startsWith("8.") && !a.startsWith("1.") && !a.startsWith("2001")) ipcache.push({ cidr: `${a}/${f === 4 ? 32 : 128}`, identity: pick(identities) });
    const endpoints: EndpointRecord[] = [0, 1, 2, 3, 4, 5].map((i) => ({
      id: 10 + i, identity: 1001 + (i % 3), ipv4: addrs[4][i * 4], ipv6: addrs[6][i * 4], ifindex: 100 + i,
      mac: `02:00:00:00:00:${(16 + i).toString(16)}`, enforceIngress: i !== 5, enforceEgress: i !== 4,
    }));
    const ports = [0, 22, 53, 80, 443, 8080];
    const protos: PolicyProto[] = [0, 1, 6, 17, 58];
    const randomEntries = (n: number): Map<number, PolicyEntry[]> => {
      const m = new Map<number, PolicyEntry[]>(endpoints.map((e) => [e.id, []]));
      for (let i = 0; i < n; i++) {
        const proto = pick(protos);
        m.get(pick(endpoints).id)!.push({
          identity: rand() < 0.25 ? 0 : pick(identities), port: proto === 6 || proto === 17 || proto === 0 ? pick(ports) : 0, proto,
          direction: rand() < 0.5 ? "egress" : "ingress", deny: rand() < 0.15,
        });
      }
      return m;
    };
    writer.setEndpoints(endpoints);
    writer.setIpcache(ipcache);
    let current = randomEntries(150);
    writer.applyPolicy({ recomputed: [...current.keys()], changes: new Map([...current].map(([id, add]) => [id, { add, remove: [] }])) });
    let now = 10_000;
    let sport = 20_000;
    for (let round = 0; round < 4; round++) {
      const events: DiffEvent[] = [];
      for (let i = 0; i < 1000; i++) {
        const family = rand() < 0.5 ? 4 : 6;
        const pool = addrs[family];
        const src = pick(pool), dst = pick(pool);
        const b = family === 4 ? packet4({ src, dst }) : packet6({ src, dst });
        const kind = rand();
        const dport = pick(ports.filter((p) => p !== 0));
        const pkt = kind < 0.45 ? b.tcp({ sport: sport++, dport, flags: { syn: true } })
          : kind < 0.85 ? b.udp({ sport: sport++, dport, payload: Uint8Array.of(1, 2) })
          : family === 4 ? (b as ReturnType<typeof packet4>).icmpEcho({ request: true, id: sport++ & 0xffff, seq: 1 })
          : (b as ReturnType<typeof packet6>).icmp6Echo({ request: true, id: sport++ & 0xffff, seq: 1 });
        if (sport > 65000) sport = 20_000;
        // "auto" as the TUN forwarder decides: the source's egress and then the local destination's ingress.
        const dir = rand();
        events.push({ kind: "packet", frame: frame(pkt), direction: dir < 0.35 ? "egress" : dir < 0.7 ? "ingress" : "auto", now, note: `round ${round} flow ${i}` });
      }
      const result = runDifferential(pair, events, 250);
      expect(result.divergence, `round ${round}`).toBeUndefined();
      expect(comparePolicyTables(pair), `round ${round}`).toBeUndefined();
      // Rewrite part of the policy: remove a third of the entries, add new ones.
      const next = randomEntries(60);
      const changes = new Map<number, { add: PolicyEntry[]; remove: PolicyEntry[] }>();
      for (const [id, entries] of current) changes.set(id, { remove: entries.filter((_, i) => i % 3 === round % 3), add: next.get(id)! });
      writer.applyPolicy({ recomputed: [...changes.keys()], changes });
      for (const [id, c] of changes) current.set(id, [...current.get(id)!.filter((e) => !c.remove.includes(e)), ...c.add]);
      expect(comparePolicyTables(pair), `after rewrite ${round}`).toBeUndefined();
      now += 100; // past the UDP/ICMP timeouts: old flows are new again under the new policy
      pair.wasm.gc(now); pair.kernel.gc(now);
    }
    const drops = pair.wasm.counters().drops.filter((d) => d.reason === "DROP_POLICY").reduce((n, d) => n + d.packets, 0);
    const forwarded = pair.wasm.counters().forwarded;
    expect(drops).toBeGreaterThan(200);
    expect(forwarded.egress.packets + forwarded.ingress.packets).toBeGreaterThan(200);
    current = new Map();
  });
});
