// `membrane policy trace` agrees with the Wasm datapath: random endpoints, rules and flows (fast-check, fixed
// seed, bounded runs); the engine programs a fresh datapath through the writer, and for every flow the verdict
// trace gives for the source's egress and the destination's ingress is what the datapath does with the flow's
// first packet in that direction.
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { Datapath } from "../../host/datapath.js";
import { packet4, packet6 } from "../../host/packet/build.js";
import { parseDocuments } from "../../host/policy/document.js";
import { PolicyEngine } from "../../host/policy/engine.js";
import { programPolicyTables } from "../../host/state/policy.js";
import { trace } from "../../host/policy/trace.js";
import { ep } from "./helpers.js";

const SEED = Number(process.env.POLICY_TRACE_SEED ?? 20261123);
const RUNS = Number(process.env.POLICY_TRACE_RUNS ?? 60);
const NOW = 1000;

const APPS = ["a", "b", "c"], TIERS = ["x", "y"];
const CIDRS = ["10.0.0.0/24", "10.0.0.0/28", "192.0.2.0/24", "192.0.2.128/25", "0.0.0.0/0", "2001:db8::/32", "2001:db8:1::/48", "fd00::/64"];
const OUTSIDE = ["10.0.0.99", "192.0.2.5", "192.0.2.200", "203.0.113.9", "2001:db8:1::5", "2001:db8:2::5", "2001:db9::1", "fd00::99"];
const PORTS = [53, 80, 443, 8080];
const PROTOS = ["tcp", "udp", "icmp"] as const;

const labelsArb = fc.record({ app: fc.constantFrom(...APPS), tier: fc.constantFrom(...TIERS) }, { requiredKeys: [] });
const endpointsArb = fc.uniqueArray(fc.record({ id: fc.integer({ min: 1, max: 12 }), labels: fc.record({ app: fc.constantFrom(...APPS), tier: fc.constantFrom(...TIERS) }), v6: fc.boolean() }), { minLength: 1, maxLength: 5, selector: (e) => e.id });

const portsArb = fc.oneof(
  fc.record({ port: fc.constantFrom(...PORTS.map(String), "0"), protocol: fc.constantFrom("TCP", "UDP", "ANY") }),
  fc.record({ port: fc.constantFrom("80"), endPort: fc.constantFrom(90), protocol: fc.constantFrom("TCP") }),
  fc.constant({ protocol: "ICMP" }),
);
/** One ingress/egress element: peers of one kind (or none: any peer) and maybe ports. */
function elementArb(dir: "from" | "to") {
  const peers = fc.oneof(
    fc.constant({}),
    fc.record({ [`${dir}Endpoints`]: fc.array(fc.record({ matchLabels: labelsArb }), { minLength: 1, maxLength: 2 }) }),
    fc.record({ [`${dir}CIDR`]: fc.uniqueArray(fc.constantFrom(...CIDRS), { minLength: 1, maxLength: 2 }) }),
    fc.record({ [`${dir}CIDRSet`]: fc.constant([{ cidr: "192.0.2.0/24", except: ["192.0.2.128/25"] }]) }),
    fc.record({ [`${dir}Entities`]: fc.uniqueArray(fc.constantFrom("world", "all", "cluster"), { minLength: 1, maxLength: 2 }) }),
  );
  return fc.tuple(peers, fc.option(fc.array(portsArb, { minLength: 1, maxLength: 2 }), { nil: undefined })).map(([p, ports]) => {
    const el: Record<string, unknown> = { ...p };
    if (ports) el.toPorts = [{ ports }];
    return el;
  });
}
const sections = (dir: "from" | "to") => fc.option(fc.array(elementArb(dir), { maxLength: 2 }), { nil: undefined });
const specArb = fc.record({ endpointSelector: fc.record({ matchLabels: labelsArb }), ingress: sections("from"), egress: sections("to"), ingressDeny: sections("from"), egressDeny: sections("to") })
  .map((s) => Object.fromEntries(Object.entries(s).filter(([, v]) => v !== undefined)));
const policiesArb = fc.array(specArb, { minLength: 1, maxLength: 4 });
const flowArb = fc.record({ src: fc.nat(), dst: fc.nat(), proto: fc.constantFrom(...PROTOS), port: fc.constantFrom(...PORTS), sport: fc.integer({ min: 1024, max: 65535 }), v6: fc.boolean() });

function firstPacket(src: string, dst: string, proto: (typeof PROTOS)[number], sport: number, dport: number): Uint8Array {
  const p = src.includes(":") ? packet6({ src, dst }) : packet4({ src, dst });
  if (proto === "tcp") return p.tcp({ sport, dport, flags: { syn: true } });
  if (proto === "udp") return p.udp({ sport, dport, payload: new Uint8Array(4) });
  return "icmp6Echo" in p && src.includes(":") ? (p as ReturnType<typeof packet6>).icmp6Echo({ request: true, id: sport, seq: 1 }) : (p as ReturnType<typeof packet4>).icmpEcho({ request: true, id: sport, seq: 1 });
}

describe("policy trace agrees with the Wasm datapath", () => {
  test(`random endpoints, rules and flows (${RUNS} runs, seed ${SEED})`, async () => {
    let checked = 0, denied = 0, policed = 0;
    await fc.assert(
      fc.asyncProperty(endpointsArb, policiesArb, fc.array(flowArb, { minLength: 4, maxLength: 12 }), async (eps, specs, flows) => {
        const engine = new PolicyEngine();
        for (const e of eps) engine.upsertEndpoint(ep(e.id, e.labels, { ipv4: `10.0.0.${e.id}`, ipv6: e.v6 ? `fd00::${e.id}` : undefined }));
        engine.importPolicies(parseDocuments(specs.map((spec, i) => ({ apiVersion: "cilium.io/v2", kind: "CiliumNetworkPolicy", metadata: { name: `p${i}` }, spec }))));
        const dp = await Datapath.create({ conntrack: { tcpEntries: 64, otherEntries: 64 }, fragments: { entries: 8 }, policy: { endpoints: 16, ipcache: 64, entries: 4096 } });
        try {
          programPolicyTables(engine, [dp.policyTables()]);
          for (const f of flows) {
            const pool = [...eps.flatMap((e) => (f.v6 ? (e.v6 ? [`fd00::${e.id}`] : []) : [`10.0.0.${e.id}`])), ...OUTSIDE.filter((a) => a.includes(":") === f.v6)];
            const src = pool[f.src % pool.length]!, dst = pool[f.dst % pool.length]!;
            const proto = f.proto === "icmp" && f.v6 ? "icmpv6" : f.proto;
            const port = f.proto === "icmp" ? 0 : f.port;
            const t = trace(engine, src, dst, `${port}/${proto}`);
            const packet = firstPacket(src, dst, f.proto, f.sport, port);
            const passes: boolean[] = [];
            for (const direction of ["egress", "ingress"] as const) {
              const side = t[direction];
              // the endpoint's table and the rules agree (trace's own check)
              if (side?.table !== undefined) expect(side.table, `${direction} table vs rules`).toBe(side.verdict);
              dp.flush();
              const v = dp.decide(packet, { direction, now: NOW });
              const want = side?.verdict ?? "allow";
              expect({ verdict: v.verdict, reason: v.dropReason }, `${src} -> ${dst} ${port}/${proto} ${direction}; rules ${JSON.stringify(specs)}`)
                .toEqual(want === "allow" ? { verdict: "pass", reason: undefined } : { verdict: "drop", reason: "DROP_POLICY" });
              passes.push(v.verdict === "pass");
              checked++;
              if (side) policed++;
              if (want === "deny") denied++;
            }
            // the flow as a whole: the source's egress and the destination's ingress must both let it through
            expect(t.verdict, `${src} -> ${dst} ${port}/${proto} overall`).toBe(passes.every(Boolean) ? "allow" : "deny");
          }
        } finally {
          dp.close();
        }
      }),
      { seed: SEED, numRuns: RUNS },
    );
    // the generator reaches both outcomes and the policed path, not only default allow
    expect(policed).toBeGreaterThan(checked / 4);
    expect(denied).toBeGreaterThan(checked / 10);
    expect(checked - denied).toBeGreaterThan(checked / 10);
  });
});
