// The conntrack tables count their IN-flagged tuples (assembly/table.ts
// tableCountTag), and the lookup skips the reverse-IN probe while none is
// stored. That count must follow every way a tuple enters or leaves a table
// (creation, delete, flush, restore, GC), or a reply to an ingress-created
// flow would be taken for a new flow. These steps need the probe each time.
import { describe, expect, test } from "vitest";
import { Datapath } from "../../host/index.js";
import { packet4 } from "../../host/packet/build.js";
import { TupleFlags } from "../../host/generated/layout.js";

const A = Uint8Array.of(10, 1, 0, 1);
const B = Uint8Array.of(10, 2, 0, 1);
const NOW = 100;
const aToB = () => packet4({ src: A, dst: B }).udp({ sport: 5000, dport: 53, payload: new Uint8Array(8) });
const bToA = () => packet4({ src: B, dst: A }).udp({ sport: 53, dport: 5000, payload: new Uint8Array(8) });

async function withIngressFlow(): Promise<Datapath> {
  const dp = await Datapath.create({ conntrack: { tcpEntries: 64, otherEntries: 64 } });
  const v = dp.decide(aToB(), { direction: "ingress", now: NOW });
  expect({ verdict: v.verdict, ct: v.ct }).toEqual({ verdict: "pass", ct: "new" });
  const [rec] = [...dp.conntrack("any4")];
  expect(rec.tuple.flags).toBe(TupleFlags.TUPLE_F_IN);
  return dp;
}

describe("the reverse-IN conntrack probe", () => {
  test("a reply to an ingress-created flow is found, with direction auto and egress", async () => {
    const dp = await withIngressFlow();
    expect(dp.decide(bToA(), { direction: "auto", now: NOW }).ct).toBe("reply");
    expect(dp.decide(bToA(), { direction: "egress", now: NOW }).ct).toBe("reply");
    expect([...dp.conntrack("any4")].length).toBe(1);
  });

  test("once the IN tuple is deleted, the same packet opens a new flow; restored, it is a reply again", async () => {
    const dp = await withIngressFlow();
    const saved = dp.dumpTable("any4");
    const [rec] = [...dp.conntrack("any4")];
    expect(dp.deleteEntry("any4", rec.key)).toBe(true);
    const fresh = dp.decide(bToA(), { direction: "auto", now: NOW });
    expect(fresh.ct).toBe("new");
    dp.flush();
    expect(dp.restoreTable("any4", saved)).toBe(1);
    expect(dp.decide(bToA(), { direction: "auto", now: NOW }).ct).toBe("reply");
  });

  test("flush and GC forget IN tuples, and a new one after them is counted again", async () => {
    const dp = await withIngressFlow();
    dp.flush();
    expect(dp.decide(bToA(), { direction: "auto", now: NOW }).ct).toBe("new");
    dp.flush();
    expect(dp.decide(aToB(), { direction: "ingress", now: NOW }).ct).toBe("new");
    // Long past every timeout: GC removes the IN tuple.
    const later = NOW + 100_000;
    const removed = dp.gc(later).find((r) => r.table === "any4")!;
    expect(removed.deleted).toBe(1);
    expect(dp.decide(bToA(), { direction: "auto", now: later }).ct).toBe("new");
    dp.flush();
    expect(dp.decide(aToB(), { direction: "ingress", now: later }).ct).toBe("new");
    expect(dp.decide(bToA(), { direction: "auto", now: later }).ct).toBe("reply");
  });
});
