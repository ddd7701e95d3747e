// The fuzz properties with policy on: the endpoints, ipcache and policy tables are populated (through the
// engine and the writer) for the very hosts the fuzz flows use, so new flows go through the endpoint lookup,
// the LPM and the policy probes. Arbitrary bytes and packet sequences never trap and never read past a packet;
// tables and counters stay consistent; and every new flow of an unmutated packet gets the verdict the engine's
// reference lookup gives (deny -> DROP_POLICY, allow -> anything but DROP_POLICY).
import { beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { Datapath } from "../../host/datapath.js";
import type { LinkKind } from "../../host/wasm/batch.js";
import { formatIp } from "../../host/packet/address.js";
import { lookup } from "../../host/policy/compute.js";
import { parseDocuments } from "../../host/policy/document.js";
import { endpointLabels } from "../../host/policy/endpoint.js";
import { PolicyEngine } from "../../host/policy/engine.js";
import { programPolicyTables } from "../../host/state/policy.js";
import {
  DIRECTIONS, LINKS, TailProbe, arbitraryFrame, buildStep, checkSequenceStep, checkVerdict, countedTotals, fcParams, flowArb, hex,
  runs, seqStepArb,
  decideOrExplain,
} from "./fuzz-inputs.js";

let dp: Datapath;
let probe: TailProbe;
let engine: PolicyEngine;
let decided = 0;
let decidedBytes = 0;

const cnp = (name: string, spec: unknown) => ({ apiVersion: "cilium.io/v2", kind: "CiliumNetworkPolicy", metadata: { name }, spec });

beforeAll(async () => {
  // the fuzz pools' hosts: 10.0.0.1, 10.0.0.2, 192.168.1.9 and fd00::1, fd00::2, fd00::9; routers .254 / ::fe
  engine = new PolicyEngine();
  engine.upsertEndpoint({ ...base(1), ipv4: "10.0.0.1", ipv6: "fd00::1", labels: labels("app=a") });
  engine.upsertEndpoint({ ...base(2), ipv4: "10.0.0.2", ipv6: "fd00::2", labels: labels("app=b") });
  engine.importPolicies(parseDocuments([
    cnp("a", {
      endpointSelector: { matchLabels: { app: "a" } },
      egress: [
        { toEndpoints: [{ matchLabels: { app: "b" } }], toPorts: [{ ports: [{ port: "80", protocol: "TCP" }, { port: "53" }] }] },
        { toCIDR: ["192.168.0.0/16", "fd00::/112"], toPorts: [{ ports: [{ port: "53", protocol: "UDP" }, { protocol: "ICMP" }, { protocol: "ICMPv6" }] }] },
        { toEntities: ["world"], toPorts: [{ ports: [{ port: "1000", protocol: "TCP" }] }] },
      ],
      egressDeny: [{ toCIDR: ["192.168.1.0/24", "fd00::8/125"], toPorts: [{ ports: [{ port: "80" }] }] }],
      ingress: [{ fromEndpoints: [{ matchLabels: { app: "b" } }] }, { fromCIDR: ["10.0.0.0/8"], toPorts: [{ ports: [{ port: "1001" }] }] }],
    }),
    cnp("b", {
      endpointSelector: { matchLabels: { app: "b" } },
      ingress: [{ fromEntities: ["cluster"], toPorts: [{ ports: [{ port: "80" }, { port: "1000", endPort: 1001 }] }] }, { fromCIDR: ["10.0.0.0/24", "0.0.0.0/0", "::/0"], toPorts: [{ ports: [{ port: "53" }] }] }],
      ingressDeny: [{ fromCIDR: ["10.0.0.254/32", "fd00::fe/128"] }],
    }),
  ]));
  dp = await Datapath.create({
    conntrack: { tcpEntries: 4096, otherEntries: 4096 }, fragments: { entries: 1024 },
    policy: { endpoints: 8, ipcache: 64, entries: 512 },
  });
  programPolicyTables(engine, [dp.policyTables()]);
  probe = new TailProbe(dp);
});

function base(id: number) {
  return { id, ifindex: id, mac: "02:00:00:00:00:0" + id };
}
function labels(s: string) {
  return endpointLabels(s, "labels");
}


describe("Wasm core with policy tables populated", () => {
  it("the tables are populated (endpoints, several prefix lengths, allow and deny entries)", () => {
    const t = dp.policyTables();
    expect(t.dump("endpoints4").length).toBe(2);
    expect(t.dump("endpoints6").length).toBe(2);
    expect(t.dump("ipcache4").length).toBeGreaterThanOrEqual(6);
    expect(t.dump("ipcache6").length).toBeGreaterThanOrEqual(5);
    const entries = [1, 2].flatMap((id) => engine.policyEntries(id));
    expect(entries.some((e) => e.deny) && entries.some((e) => !e.deny)).toBe(true);
  });

  for (const link of LINKS) {
    it(`arbitrary bytes never trap and always decide (${link}, ${runs(0.05)} runs)`, () => {
      fc.assert(
        fc.property(arbitraryFrame(link), fc.constantFrom(...DIRECTIONS), fc.integer({ min: 0, max: 0xffffffff }), (bytes, direction, now) => {
          dp.flush();
          const v = decideOrExplain(dp, bytes, { link: link as LinkKind, direction, now }, () => "");
          decided++;
          decidedBytes += bytes.length;
          checkVerdict(v, bytes, link);
          probe.check([{ bytes, link, direction }], now, v);
        }),
        fcParams(runs(0.05)),
      );
    });
  }

  it(`packet sequences: no trap, consistent tables and counters, new flows decided as the engine says (${runs(1 / 200)} sequences)`, () => {
    let policed = 0, denied = 0;
    const start = countedTotals(dp);
    decided = 0;
    decidedBytes = 0;
    fc.assert(
      fc.property(
        fc.array(flowArb({ ports: [1000, 1001], ids: [80, 53, 1000, 1001] }), { minLength: 1, maxLength: 5 }),
        fc.array(seqStepArb(), { minLength: 1, maxLength: 40, size: "max" }),
        fc.integer({ min: 1, max: 1_000_000 }),
        (flows, steps, t0) => {
          dp.flush();
          let now = t0;
          const trace: string[] = [];
          for (const s of steps) {
            now += s.dt;
            if (s.flush) { dp.flush(); trace.push("flush"); }
            if (s.gc) { dp.gc(now); trace.push(`gc(${now})`); }
            const b = buildStep(flows, s);
            trace.push(`${now} ${s.kind} ${s.direction} ${b.link} ${hex(b.bytes)}`);
            const where = () => `after\n  ${trace.join("\n  ")}`;
            const v = decideOrExplain(dp, b.bytes, { link: b.link, direction: s.direction, now }, where);
            decided++;
            decidedBytes += b.bytes.length;
            checkSequenceStep(dp, v, b, { packets: start.packets + decided, bytes: start.bytes + decidedBytes }, where);
            const m = b.model;
            if (!m || m.quoted || m.frag === "later" || v.ct !== "new" || (v.direction !== "egress" && v.direction !== "ingress")) continue;
            const direction = v.direction;
            const local = engine.resolveAddress(formatIp(direction === "egress" ? m.src : m.dst));
            const ep = local.endpoint === undefined ? undefined : engine.endpoint(local.endpoint);
            if (!ep) {
              expect(v.dropReason, `unpoliced flow ${where()}`).not.toBe("DROP_POLICY");
              continue;
            }
            policed++;
            const remote = engine.resolveAddress(formatIp(direction === "egress" ? m.dst : m.src)).identity;
            const port = m.proto === 6 || m.proto === 17 ? m.dport : 0;
            const want = lookup(ep.entries, direction === "ingress" ? ep.record.enforceIngress : ep.record.enforceEgress, { direction, identity: remote, port, proto: m.proto }).verdict;
            if (want === "deny") denied++;
            if (want === "deny") expect(v.dropReason, `policy should deny ${where()}`).toBe("DROP_POLICY");
            else expect(v.dropReason, `policy should allow ${where()}`).not.toBe("DROP_POLICY");
          }
        },
      ),
      fcParams(runs(1 / 200)),
    );
    // the sequences reach the policy decision both ways
    expect(policed).toBeGreaterThan(50);
    expect(denied).toBeGreaterThan(10);
    expect(policed - denied).toBeGreaterThan(10);
  });

  it(`sequences are decided without reading past a packet (${runs(1 / 500)} sequences)`, () => {
    fc.assert(
      fc.property(
        fc.array(flowArb({ ids: [80, 53, 1000] }), { minLength: 1, maxLength: 4 }),
        fc.array(seqStepArb(), { minLength: 1, maxLength: 12, size: "max" }),
        (flows, steps) => {
          probe.check(steps.map((s) => ({ ...buildStep(flows, s), direction: s.direction })), 1000);
        },
      ),
      fcParams(runs(1 / 500)),
    );
  });
});
