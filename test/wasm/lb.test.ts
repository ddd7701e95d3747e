// The service load-balancer in the Wasm core: selection, stickiness across
// slot renumbering, re-selection, reverse NAT of replies and ICMP errors,
// no-backend drops. Every packet that passes is checked by a full checksum
// recompute (fixtures.send).
import { describe, expect, test } from "vitest";
import { Datapath } from "../../host/datapath.js";
import { decodePacket } from "../../host/packet/decode.js";
import { quoteForIcmpError } from "../../host/packet/build.js";
import { LB_TEST_OPTIONS, V4, V6, backends, send, summary, type Family } from "../lb/fixtures.js";

const NOW = 1000;

async function withService(f: Family, proto: "tcp" | "udp", ids: number[], algorithm: "random" | "legacy" | "maglev" = "random") {
  const dp = await Datapath.create(LB_TEST_OPTIONS);
  dp.services.upsertService({ vip: f.vip, port: 80, proto, algorithm, backends: backends(f, ids) });
  return dp;
}

function open(dp: Datapath, f: Family, proto: "tcp" | "udp", sport: number) {
  const b = f.build(f.client, f.vip);
  const pkt = proto === "tcp" ? b.tcp({ sport, dport: 80, flags: { syn: true } }) : b.udp({ sport, dport: 80, payload: Uint8Array.of(1, 2, 3) });
  return send(dp, pkt, NOW);
}

function next(dp: Datapath, f: Family, proto: "tcp" | "udp", sport: number, now = NOW + 1) {
  const b = f.build(f.client, f.vip);
  const pkt = proto === "tcp" ? b.tcp({ sport, dport: 80, flags: { ack: true } }) : b.udp({ sport, dport: 80, payload: Uint8Array.of(4) });
  return send(dp, pkt, now);
}

const CLIENT_PORTS = Array.from({ length: 48 }, (_, i) => 20000 + i * 7);

for (const f of [V4, V6]) {
  describe(`service load-balancing, IPv${f.family} (Wasm)`, () => {
    for (const proto of ["tcp", "udp"] as const) {
      test(`${proto}: a new flow is DNATed to a backend of the service, its reply comes back from VIP:port`, async () => {
        const dp = await withService(f, proto, [1, 2, 3]);
        const v = open(dp, f, proto, 40000);
        expect(v.verdict).toBe("pass");
        expect(v.ct).toBe("new");
        const out = summary(v);
        expect([1, 2, 3].map((i) => f.backend(i))).toContain(out.dst);
        expect({ src: out.src, sport: out.sport, dport: out.dport }).toEqual({ src: f.client, sport: 40000, dport: 8080 });

        // Two entries: the SERVICE entry keyed on client -> VIP, and the flow client -> backend.
        const entries = [...dp.conntrack()];
        const svc = entries.find((e) => e.tuple.flags === 4)!;
        const flow = entries.find((e) => e.tuple.flags === 0)!;
        const backendId = dp.services.listServices()[0].backends.find((b) => b.addr === out.dst)!.id;
        expect({ dst: svc.tuple.dst, dport: svc.tuple.dport, backend: svc.entry.backendId, revNat: svc.entry.revNatIndex })
          .toEqual({ dst: f.vip, dport: 80, backend: backendId, revNat: 1 });
        expect({ dst: flow.tuple.dst, backend: flow.entry.backendId, revNat: flow.entry.revNatIndex })
          .toEqual({ dst: out.dst, backend: backendId, revNat: 1 });

        const r = f.build(out.dst!, f.client);
        const reply = proto === "tcp" ? r.tcp({ sport: 8080, dport: 40000, flags: { syn: true, ack: true } }) : r.udp({ sport: 8080, dport: 40000, payload: Uint8Array.of(9) });
        const rv = send(dp, reply, NOW);
        expect({ verdict: rv.verdict, ct: rv.ct, ...summary(rv) }).toEqual({ verdict: "pass", ct: "reply", src: f.vip, dst: f.client, sport: 80, dport: 40000 });
      });
    }

    test("the SERVICE entry lives as long as its flow's entry: a closed connection frees both within the close timeout", async () => {
      const dp = await withService(f, "tcp", [1, 2]);
      const lifetimes = () => {
        const entries = [...dp.conntrack()];
        return { svc: entries.find((e) => e.tuple.flags === 4)!.entry.lifetime, flow: entries.find((e) => e.tuple.flags === 0)!.entry.lifetime };
      };
      const c = f.build(f.client, f.vip);
      const dst = summary(send(dp, c.tcp({ sport: 41000, dport: 80, flags: { syn: true } }), NOW)).dst!;
      expect(lifetimes()).toEqual({ svc: NOW + 60, flow: NOW + 60 }); // SYN timeout
      const s = f.build(dst, f.client);
      send(dp, s.tcp({ sport: 8080, dport: 41000, flags: { syn: true, ack: true } }), NOW + 1);
      send(dp, c.tcp({ sport: 41000, dport: 80, flags: { ack: true } }), NOW + 2);
      expect(lifetimes()).toEqual({ svc: NOW + 2 + 21600, flow: NOW + 2 + 21600 }); // established
      send(dp, c.tcp({ sport: 41000, dport: 80, flags: { fin: true, ack: true } }), NOW + 3);
      send(dp, s.tcp({ sport: 8080, dport: 41000, flags: { fin: true, ack: true } }), NOW + 4);
      // Only the client's last ACK passes the SERVICE entry: it takes the flow's close timeout.
      send(dp, c.tcp({ sport: 41000, dport: 80, flags: { ack: true } }), NOW + 5);
      expect(lifetimes()).toEqual({ svc: NOW + 5 + 10, flow: NOW + 5 + 10 });
    });

    test("established flows keep their backend when other backends are removed and slots renumber", async () => {
      const dp = await withService(f, "tcp", [1, 2, 3, 4, 5]);
      const chosen = new Map(CLIENT_PORTS.map((p) => [p, summary(open(dp, f, "tcp", p)).dst!]));
      const removed = f.backend(2);
      expect([...chosen.values()]).toContain(removed);
      dp.services.upsertService({ vip: f.vip, port: 80, proto: "tcp", backends: backends(f, [1, 3, 4, 5]) });
      // A datapath that never saw the flows selects by the renumbered slots: some flows land elsewhere.
      const fresh = await withService(f, "tcp", [1, 3, 4, 5]);
      let moved = 0;
      for (const [p, dst] of chosen) {
        if (dst === removed) continue;
        expect(summary(next(dp, f, "tcp", p)).dst, `client port ${p}`).toBe(dst);
        if (summary(open(fresh, f, "tcp", p)).dst !== dst) moved++;
      }
      expect(moved, "flows whose slot changed (stickiness must come from conntrack)").toBeGreaterThan(0);
    });

    test("a flow whose backend was removed selects again, records it and stays there", async () => {
      const dp = await withService(f, "udp", [1, 2, 3]);
      const chosen = new Map(CLIENT_PORTS.map((p) => [p, summary(open(dp, f, "udp", p)).dst!]));
      const removed = f.backend(3);
      dp.services.upsertService({ vip: f.vip, port: 80, proto: "udp", backends: backends(f, [1, 2]) });
      const orphans = [...chosen].filter(([, dst]) => dst === removed);
      expect(orphans.length).toBeGreaterThan(0);
      const ids = new Map(dp.services.listServices()[0].backends.map((b) => [b.addr, b.id]));
      for (const [p] of orphans) {
        const now = summary(next(dp, f, "udp", p)).dst!;
        expect([f.backend(1), f.backend(2)]).toContain(now);
        const svc = [...dp.conntrack()].find((e) => e.tuple.flags === 4 && e.tuple.sport === p)!;
        expect(svc.entry.backendId).toBe(ids.get(now));
        expect(summary(next(dp, f, "udp", p, NOW + 2)).dst).toBe(now);
      }
    });

    test("a service without backends drops new flows with DROP_NO_SERVICE, counted", async () => {
      const dp = await withService(f, "tcp", []);
      const v = open(dp, f, "tcp", 40000);
      expect({ verdict: v.verdict, dropReason: v.dropReason, ct: v.ct }).toEqual({ verdict: "drop", dropReason: "DROP_NO_SERVICE", ct: "none" });
      expect(dp.counters().drops).toEqual([expect.objectContaining({ reason: "DROP_NO_SERVICE", code: 158, packets: 1 })]);
      expect([...dp.conntrack()]).toEqual([]);
      // Backends come, a flow opens; all backends go: the established flow is dropped too.
      dp.services.upsertService({ vip: f.vip, port: 80, proto: "tcp", backends: backends(f, [1]) });
      expect(open(dp, f, "tcp", 40001).verdict).toBe("pass");
      dp.services.upsertService({ vip: f.vip, port: 80, proto: "tcp", backends: [] });
      expect(next(dp, f, "tcp", 40001).dropReason).toBe("DROP_NO_SERVICE");
    });

    test("a drained backend (weight 0) keeps its flows and gets no new ones", async () => {
      const dp = await withService(f, "tcp", [1, 2]);
      const chosen = new Map(CLIENT_PORTS.map((p) => [p, summary(open(dp, f, "tcp", p)).dst!]));
      dp.services.upsertService({ vip: f.vip, port: 80, proto: "tcp", backends: [{ addr: f.backend(1), port: 8080, weight: 0 }, { addr: f.backend(2), port: 8080 }] });
      for (const [p, dst] of chosen) expect(summary(next(dp, f, "tcp", p)).dst).toBe(dst);
      for (const p of CLIENT_PORTS) expect(summary(open(dp, f, "tcp", p + 1)).dst).toBe(f.backend(2));
    });

    for (const from of ["backend", "router"] as const) {
      for (const proto of ["tcp", "udp"] as const) {
        test(`an ICMP error from the ${from} about a ${proto} service flow reaches the client translated back`, async () => {
          const dp = await withService(f, proto, [1]);
          const b = f.build(f.client, f.vip);
          const original = proto === "tcp"
            ? b.tcp({ sport: 40000, dport: 80, flags: { syn: true }, payload: new Uint8Array(12).fill(7) })
            : b.udp({ sport: 40000, dport: 80, payload: new Uint8Array(12).fill(7) });
          const fwd = send(dp, original, NOW);
          expect(summary(fwd).dst).toBe(f.backend(1));
          // Whoever sends the error quotes what it received: the packet to the backend.
          const errFrom = from === "backend" ? f.backend(1) : f.router;
          const e = f.build(errFrom, f.client);
          const quoted = quoteForIcmpError(fwd.data);
          const err = "icmpError" in e
            ? e.icmpError({ type: 3, code: 3, quoted })
            : e.icmp6Error({ type: 1, code: 4, quoted });
          const v = send(dp, err, NOW);
          expect({ verdict: v.verdict, ct: v.ct }).toEqual({ verdict: "pass", ct: "related" });
          const d = decodePacket(v.data, "ip");
          expect({ src: d.src, dst: d.dst }).toEqual({ src: from === "backend" ? f.vip : f.router, dst: f.client });
          // The quote is again what the client sent, byte for byte (checksums included).
          const headerLen = 8 + (f.family === 4 ? 20 : 40);
          expect(Buffer.from(v.data.subarray(headerLen)).toString("hex")).toBe(Buffer.from(quoteForIcmpError(original)).toString("hex"));
        });
      }
    }

    test("an ICMP error quoting a reply (travelling to the backend) is left alone", async () => {
      const dp = await withService(f, "udp", [1]);
      send(dp, f.build(f.client, f.vip).udp({ sport: 40000, dport: 80, payload: Uint8Array.of(1) }), NOW);
      const reply = f.build(f.backend(1), f.client).udp({ sport: 8080, dport: 40000, payload: Uint8Array.of(2) });
      const e = f.build(f.router, f.backend(1));
      const quoted = quoteForIcmpError(reply);
      const err = "icmpError" in e ? e.icmpError({ type: 11, code: 0, quoted }) : e.icmp6Error({ type: 3, code: 0, quoted });
      const v = send(dp, err, NOW);
      expect({ verdict: v.verdict, ct: v.ct }).toEqual({ verdict: "pass", ct: "related" });
      expect(Buffer.from(v.data).equals(Buffer.from(err))).toBe(true);
    });

    test("ICMP echo to a VIP is not a service flow: it passes untouched", async () => {
      const dp = await withService(f, "tcp", [1]);
      const b = f.build(f.client, f.vip);
      const ping = "icmpEcho" in b ? b.icmpEcho({ request: true, id: 7, seq: 1 }) : b.icmp6Echo({ request: true, id: 7, seq: 1 });
      const v = send(dp, ping, NOW);
      expect(v.verdict).toBe("pass");
      expect(Buffer.from(v.data).equals(Buffer.from(ping))).toBe(true);
    });

    test("other ports and protocols of the VIP are not translated", async () => {
      const dp = await withService(f, "tcp", [1]);
      const b = f.build(f.client, f.vip);
      for (const pkt of [b.tcp({ sport: 1, dport: 81, flags: { syn: true } }), b.udp({ sport: 1, dport: 80 })]) {
        const v = send(dp, pkt, NOW);
        expect(Buffer.from(v.data).equals(Buffer.from(pkt))).toBe(true);
      }
    });

    test("maglev: a flow keeps its backend after a conntrack flush, and the table decides", async () => {
      const dp = await withService(f, "tcp", [1, 2, 3, 4, 5, 6], "maglev");
      const chosen = new Map(CLIENT_PORTS.map((p) => [p, summary(open(dp, f, "tcp", p)).dst!]));
      expect(new Set(chosen.values()).size).toBeGreaterThan(2);
      dp.flush();
      const other = await withService(f, "tcp", [6, 5, 4, 3, 2, 1], "maglev"); // another node, backends learnt in another order
      for (const [p, dst] of chosen) {
        expect(summary(open(dp, f, "tcp", p)).dst).toBe(dst);
        expect(summary(open(other, f, "tcp", p)).dst).toBe(dst);
      }
    });

    test("legacy: removing a backend fills its slots with duplicates; flows still reach live backends", async () => {
      const dp = await withService(f, "tcp", [1, 2, 3, 4], "legacy");
      dp.services.upsertService({ vip: f.vip, port: 80, proto: "tcp", algorithm: "legacy", backends: backends(f, [1, 2, 4]) });
      const svc = dp.services.listServices()[0];
      expect(svc.slots.length).toBe(4);
      expect(new Set(svc.slots).size).toBe(3);
      for (const p of CLIENT_PORTS) expect([1, 2, 4].map((i) => f.backend(i))).toContain(summary(open(dp, f, "tcp", p)).dst);
    });
  });
}

test("a reply whose service was deleted passes untranslated (as Cilium: no reverse-NAT entry, no rewrite)", async () => {
  const f = V4;
  const dp = await withService(f, "udp", [1]);
  send(dp, f.build(f.client, f.vip).udp({ sport: 40000, dport: 80 }), NOW);
  dp.services.deleteService({ vip: f.vip, port: 80, proto: "udp" });
  const reply = f.build(f.backend(1), f.client).udp({ sport: 8080, dport: 40000 });
  const v = send(dp, reply, NOW);
  expect({ verdict: v.verdict, ct: v.ct }).toEqual({ verdict: "pass", ct: "reply" });
  expect(Buffer.from(v.data).equals(Buffer.from(reply))).toBe(true);
});

test("a UDP datagram without checksum keeps none after DNAT and reverse NAT", async () => {
  const f = V4;
  const dp = await withService(f, "udp", [1]);
  const pkt = f.build(f.client, f.vip).udp({ sport: 40000, dport: 80, payload: Uint8Array.of(1, 2) });
  pkt[20 + 6] = 0;
  pkt[20 + 7] = 0;
  const v = send(dp, pkt, NOW);
  expect(summary(v).dst).toBe(f.backend(1));
  expect([v.data[26], v.data[27]]).toEqual([0, 0]);
});
