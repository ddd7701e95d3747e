// Identity-based policy in the Wasm core: the shared policy steps, the
// identity recorded in conntrack, hit counters, per-direction drop counters,
// the writer's validation, and the ipcache's longest-prefix match against a
// brute-force reference.
import { beforeEach, describe, expect, test } from "vitest";
import { Datapath } from "../../host/index.js";
import { PolicyDatapathWriter } from "../../host/policy/datapath-writer.js";
import { decodeIpcacheRow, decodePolicyRow } from "../../host/policy/records.js";
import { parseIp } from "../../host/packet/address.js";
import { packet4, packet6 } from "../../host/packet/build.js";
import {
  CLUSTER, ENDPOINTS, EP_A, EP_B, HOST_IN_SUBNET, IPCACHE, POLICY_A, SUBNET, addr, policyDiff, policySteps, reusedTupleCase,
} from "../fixtures/policy-scenarios.js";
import { ReservedIdentity } from "../../host/policy/types.js";

const NOW = 1000;

async function setup(options = {}) {
  const dp = await Datapath.create({ conntrack: { tcpEntries: 1024, otherEntries: 1024 }, fragments: { entries: 64 }, ...options });
  const writer = new PolicyDatapathWriter([dp.policyTables()]);
  writer.setEndpoints(ENDPOINTS);
  writer.setIpcache(IPCACHE);
  writer.applyPolicy(policyDiff(POLICY_A));
  return { dp, writer };
}

function policyRows(dp: Datapath) {
  return dp.policyTables().dump("policy").map(([k, v]) => decodePolicyRow(k, v));
}

for (const family of [4, 6] as const) {
  describe(`policy steps, IPv${family}`, () => {
    test("every step gets its verdict", async () => {
      const { dp } = await setup();
      for (const [i, step] of policySteps(family).entries()) {
        const v = dp.decide(step.packet, { direction: step.direction, now: NOW });
        expect({ verdict: v.verdict, ct: v.ct, dropReason: v.dropReason }, `step ${i + 1}: ${step.note}`).toEqual({
          verdict: step.expect.verdict, ct: step.expect.ct, dropReason: step.expect.dropReason,
        });
      }
    });

    test("the remote identity is recorded in the conntrack entry; unpoliced flows record none", async () => {
      const { dp } = await setup();
      const steps = policySteps(family);
      for (const s of steps) dp.decide(s.packet, { direction: s.direction, now: NOW });
      const byPeer = new Map<string, number>();
      for (const r of dp.conntrack()) {
        const tuple = r.tuple as { src: string; dst: string; dport: number };
        byPeer.set(`${tuple.src}>${tuple.dst}:${tuple.dport}`, r.entry.srcSecId);
      }
      const A = addr(family, "A"), B = addr(family, "B");
      expect(byPeer.get(`${A}>${addr(family, "subnet")}:80`)).toBe(SUBNET);
      expect(byPeer.get(`${A}>${addr(family, "world")}:443`)).toBe(ReservedIdentity.world);
      expect(byPeer.get(`${A}>${addr(family, "cluster")}:53`)).toBe(CLUSTER);
      expect(byPeer.get(`${B}>${A}:8080`)).toBe(EP_B.identity);
      expect(byPeer.get(`${addr(family, "world")}>${A}:22`)).toBe(ReservedIdentity.world);
      // Endpoint B enforces nothing, but its flows still carry the peer's identity.
      expect(byPeer.get(`${addr(family, "host")}>${B}:25`)).toBe(HOST_IN_SUBNET);
      expect(byPeer.get(`${addr(family, "stranger")}>${addr(family, "world")}:25`)).toBe(0);
      // Denied flows leave no entry.
      expect(byPeer.has(`${A}>${addr(family, "world")}:80`)).toBe(false);
    });

    test("hit counters go to the deciding entry: the most specific allow, or the deny", async () => {
      const { dp } = await setup();
      for (const s of policySteps(family)) dp.decide(s.packet, { direction: s.direction, now: NOW });
      const hits = (identity: number, port: number, proto: number, direction: string) =>
        policyRows(dp).find((r) => r.identity === identity && r.port === port && r.proto === proto && r.direction === direction)?.hits;
      expect(hits(SUBNET, 80, 6, "egress")).toBe(1); // the reply and the established packet do not count
      expect(hits(0, 443, 6, "egress")).toBe(2); // subnet and world; the host in the subnet was denied
      expect(hits(HOST_IN_SUBNET, 0, 0, "egress")).toBe(2); // port 80 and port 443 to it
      expect(hits(EP_B.identity, 8080, 6, "ingress")).toBe(1); // not the any-port entry, which also matches
      expect(hits(EP_B.identity, 0, 0, "ingress")).toBe(1); // UDP 9999
      expect(hits(HOST_IN_SUBNET, 22, 6, "ingress")).toBe(1);
      expect(hits(0, 22, 6, "ingress")).toBe(2);
    });
  });
}

describe("families interleaved in one datapath", () => {
  // Regression: an IPv6 endpoint lookup left address bytes in the scratch key
  // that a following IPv4 lookup compared (found by the differential suite).
  test("IPv4 steps after an IPv6 lookup of an address with bits in its second word", async () => {
    const { dp } = await setup();
    dp.decide(packet6({ src: "2001:db8:1:2::9", dst: "2001:db8::1" }).udp({ sport: 1, dport: 2 }), { direction: "egress", now: NOW });
    for (const f of [4, 6] as const) {
      for (const [i, step] of policySteps(f).entries()) {
        const v = dp.decide(step.packet, { direction: step.direction, now: NOW });
        expect(v.dropReason, `IPv${f} step ${i + 1}: ${step.note}`).toBe(step.expect.dropReason);
      }
    }
  });
});

describe("policy drops are counted per direction", () => {
  test("DROP_POLICY packets by direction", async () => {
    const { dp } = await setup();
    for (const f of [4, 6] as const) for (const s of policySteps(f)) dp.decide(s.packet, { direction: s.direction, now: NOW });
    const drops = dp.counters().drops.filter((d) => d.reason === "DROP_POLICY");
    const expected = (dir: string) => [4, 6].flatMap((f) => policySteps(f as 4 | 6)).filter((s) => s.expect.dropReason && s.direction === dir).length;
    expect(drops.find((d) => d.direction === "egress")?.packets).toBe(expected("egress"));
    expect(drops.find((d) => d.direction === "ingress")?.packets).toBe(expected("ingress"));
    expect(drops[0].text).toBe("Policy denied");
  });
});

describe("policy changes", () => {
  test("removing an entry denies new flows but keeps established ones; re-adding allows again", async () => {
    const { dp, writer } = await setup();
    const [first, reply, established] = policySteps(4);
    dp.decide(first.packet, { direction: "egress", now: NOW });
    const rule = POLICY_A[0];
    const s = writer.applyPolicy(policyDiff([], [rule]));
    expect(s).toEqual({ written: 0, deleted: 1 });
    expect(dp.decide(reply.packet, { direction: "ingress", now: NOW }).ct).toBe("reply");
    expect(dp.decide(established.packet, { direction: "egress", now: NOW }).verdict).toBe("pass");
    const again = policySteps(4)[0].packet.slice();
    const other = dp.decide(again, { direction: "egress", now: NOW }); // same flow: still established
    expect(other.ct).toBe("established");
    dp.flush();
    expect(dp.decide(first.packet, { direction: "egress", now: NOW }).dropReason).toBe("DROP_POLICY");
    writer.applyPolicy(policyDiff([rule]));
    expect(dp.decide(first.packet, { direction: "egress", now: NOW }).verdict).toBe("pass");
  });

  for (const family of [4, 6] as const) {
    test(`IPv${family}: a closed connection's 5-tuple reused after its rule is removed is judged by the current policy`, async () => {
      const { dp, writer } = await setup();
      const c = reusedTupleCase(family);
      const run = (steps: typeof c.before, phase: string) => {
        for (const [i, step] of steps.entries()) {
          const v = dp.decide(step.packet, { direction: step.direction, now: NOW });
          expect({ verdict: v.verdict, ct: v.ct, dropReason: v.dropReason }, `${phase} step ${i + 1}: ${step.note}`).toEqual({
            verdict: step.expect.verdict, ct: step.expect.ct, dropReason: step.expect.dropReason,
          });
        }
      };
      run(c.before, "before");
      writer.applyPolicy(c.change);
      run(c.after, "after the change");
      writer.applyPolicy(c.restore);
      run(c.again, "with the rule back");
    });
  }

  test("re-adding an unchanged entry writes nothing and keeps its hits; an allow and a deny under one key: deny", async () => {
    const { dp, writer } = await setup();
    dp.decide(policySteps(4)[0].packet, { direction: "egress", now: NOW });
    expect(writer.applyPolicy(policyDiff(POLICY_A))).toEqual({ written: 0, deleted: 0 });
    expect(policyRows(dp).find((r) => r.identity === SUBNET && r.port === 80)?.hits).toBe(1);
    const key = { identity: 4242, port: 9, proto: 17 as const, direction: "egress" as const };
    writer.applyPolicy(policyDiff([{ ...key, deny: false }, { ...key, deny: true }]));
    expect(policyRows(dp).find((r) => r.identity === 4242)?.deny).toBe(true);
  });

  test("an endpoint that stops enforcing allows", async () => {
    const { dp, writer } = await setup();
    const denied = policySteps(4).find((s) => s.note.startsWith("port 80 to the world"))!;
    expect(dp.decide(denied.packet, { direction: "egress", now: NOW }).verdict).toBe("drop");
    writer.setEndpoints(ENDPOINTS.map((e) => ({ ...e, enforceEgress: false })));
    expect(dp.decide(denied.packet, { direction: "egress", now: NOW }).verdict).toBe("pass");
  });

  test("without endpoints nothing is policed and no identity is recorded", async () => {
    const dp = await Datapath.create({ conntrack: { tcpEntries: 64, otherEntries: 64 } });
    for (const s of policySteps(6)) expect(dp.decide(s.packet, { direction: s.direction, now: NOW }).verdict).toBe("pass");
    for (const r of dp.conntrack()) expect(r.entry.srcSecId).toBe(0);
  });
});

describe("writer validation: bad input changes nothing", () => {
  let dp: Datapath;
  let writer: PolicyDatapathWriter;
  beforeEach(async () => ({ dp, writer } = await setup({ policy: { endpoints: 4, ipcache: 16, entries: 12 } })));

  const snapshot = () => ["endpoints4", "endpoints6", "ipcache4", "ipcache6", "policy"].map((t) =>
    dp.policyTables().dump(t as "policy").map(([k, v]) => Buffer.concat([k, v]).toString("hex")).sort().join());

  const cases: [string, () => unknown, RegExp][] = [
    ["endpoint id 0", () => writer.setEndpoints([{ ...ENDPOINTS[0], id: 0 }]), /endpoints\[0\].*id: expected an integer from 1 to 65535/],
    ["endpoint without address", () => writer.setEndpoints([{ ...ENDPOINTS[0], ipv4: undefined, ipv6: undefined }]), /needs ipv4, ipv6 or both/],
    ["bad MAC", () => writer.setEndpoints([{ ...ENDPOINTS[0], mac: "02:00" }]), /mac: Invalid MAC/],
    ["IPv6 in ipv4", () => writer.setEndpoints([{ ...ENDPOINTS[0], ipv4: "fd00::1" }]), /ipv4: "fd00::1" is not an IPv4 address/],
    ["duplicate endpoint id", () => writer.setEndpoints([ENDPOINTS[0], { ...ENDPOINTS[1], id: ENDPOINTS[0].id }]), /id 101 appears twice/],
    ["too many endpoints", () => writer.setEndpoints([1, 2, 3, 4, 5].map((i) => ({ ...ENDPOINTS[0], id: i, ipv4: `10.9.0.${i}`, ipv6: undefined }))), /5 do not fit the wasm datapath's endpoints4 table \(4 entries/],
    ["bits past the prefix", () => writer.setIpcache([{ cidr: "10.0.0.1/8", identity: 5 }]), /bits set past its \/8 prefix/],
    ["prefix too long", () => writer.setIpcache([{ cidr: "fd00::/129", identity: 5 }]), /prefix length "129"/],
    ["ipcache identity 0", () => writer.setIpcache([{ cidr: "10.0.0.0/8", identity: 0 }]), /identity: expected an integer from 1/],
    ["policy proto 7", () => writer.applyPolicy(policyDiff([{ identity: 1, port: 0, proto: 7 as 6, direction: "egress", deny: false }])), /proto: expected one of 0, 1, 6, 17, 58/],
    ["port with ICMP", () => writer.applyPolicy(policyDiff([{ identity: 1, port: 5, proto: 1, direction: "egress", deny: false }])), /only TCP and UDP/],
    ["bad direction", () => writer.applyPolicy(policyDiff([{ identity: 1, port: 5, proto: 6, direction: "out" as "egress", deny: false }])), /direction: expected "ingress" or "egress"/],
    ["policy table full", () => writer.applyPolicy(policyDiff([1, 2, 3].map((i) => ({ identity: 9000 + i, port: 0, proto: 0 as const, direction: "egress" as const, deny: false })))), /13 do not fit the wasm datapath's policy table \(12 entries/],
    ["one bad entry among good ones", () => writer.applyPolicy(policyDiff([{ identity: 7, port: 1, proto: 6, direction: "egress", deny: false }, { identity: -1, port: 1, proto: 6, direction: "egress", deny: false }])), /add\[1\]: identity/],
  ];
  for (const [name, act, message] of cases) {
    test(name, () => {
      const before = snapshot();
      expect(act).toThrow(message);
      expect(snapshot()).toEqual(before);
    });
  }
});

describe("ipcache longest-prefix match against a brute-force reference", () => {
  // A seeded generator, so a failure reproduces.
  function rng(seed: number) {
    let s = seed >>> 0;
    return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  }
  function mask(bytes: Uint8Array, len: number): Uint8Array {
    const out = bytes.slice();
    for (let bit = len; bit < out.length * 8; bit++) out[bit >> 3] &= ~(0x80 >> (bit & 7));
    return out;
  }
  function covers(prefix: Uint8Array, len: number, a: Uint8Array): boolean {
    return Buffer.from(mask(a, len)).equals(Buffer.from(prefix));
  }
  const fmt = (b: Uint8Array) => (b.length === 4 ? [...b].join(".") : [...Array(8)].map((_, i) => ((b[2 * i] << 8) | b[2 * i + 1]).toString(16)).join(":"));

  for (const family of [4, 6] as const) {
    test(`IPv${family}: random nested prefixes, lookups, then deletions`, async () => {
      const dp = await Datapath.create({ conntrack: { tcpEntries: 16, otherEntries: 16 }, policy: { ipcache: 512 } });
      const writer = new PolicyDatapathWriter([dp.policyTables()]);
      const rand = rng(family * 7919);
      const size = family === 4 ? 4 : 16;
      // Addresses share a few bases so prefixes nest.
      const bases = [0, 1, 2].map(() => Uint8Array.from({ length: size }, () => Math.floor(rand() * 256)));
      const randomAddr = () => {
        const a = bases[Math.floor(rand() * bases.length)].slice();
        const flip = Math.floor(rand() * size * 8);
        a[flip >> 3] ^= 0x80 >> (flip & 7);
        return a;
      };
      const prefixes = new Map<string, { bytes: Uint8Array; len: number; identity: number }>();
      while (prefixes.size < 300) {
        const len = Math.floor(rand() * (size * 8 + 1));
        const bytes = mask(randomAddr(), len);
        prefixes.set(`${fmt(bytes)}/${len}`, { bytes, len, identity: 100 + prefixes.size });
      }
      const reference = (a: Uint8Array) => {
        let best: { len: number; identity: number } | undefined;
        for (const p of prefixes.values()) if (covers(p.bytes, p.len, a) && (!best || p.len > best.len)) best = p;
        return best?.identity ?? ReservedIdentity.world;
      };
      const check = () => {
        for (let i = 0; i < 400; i++) {
          const a = randomAddr();
          expect(dp.policyTables().identityOf(a), fmt(a)).toBe(reference(a));
        }
      };
      writer.setIpcache([...prefixes].map(([cidr, p]) => ({ cidr, identity: p.identity })));
      check();
      for (const k of [...prefixes.keys()].filter((_, i) => i % 3 === 0)) prefixes.delete(k);
      writer.setIpcache([...prefixes].map(([cidr, p]) => ({ cidr, identity: p.identity })));
      check();
      const rows = dp.policyTables().dump(family === 4 ? "ipcache4" : "ipcache6").map(([k, v]) => decodeIpcacheRow(family === 4 ? "ipcache4" : "ipcache6", k, v));
      expect(rows.length).toBe(prefixes.size);
    });
  }

  test("a /0 prefix catches every address; without it the world", async () => {
    const dp = await Datapath.create({ conntrack: { tcpEntries: 16, otherEntries: 16 } });
    const writer = new PolicyDatapathWriter([dp.policyTables()]);
    const any = parseIp("203.0.113.9").bytes;
    expect(dp.policyTables().identityOf(any)).toBe(ReservedIdentity.world);
    writer.setIpcache([{ cidr: "0.0.0.0/0", identity: 77 }, { cidr: "::/0", identity: 78 }]);
    expect(dp.policyTables().identityOf(any)).toBe(77);
    expect(dp.policyTables().identityOf(parseIp("2001:db8::1").bytes)).toBe(78);
    expect(EP_A.id).toBe(101);
  });
});

describe("direction auto (the TUN forwarder between both ends of a flow)", () => {
  for (const family of [4, 6] as const) {
    const tcpSyn = (src: string, dst: string, sport: number, dport: number) =>
      family === 4 ? packet4({ src, dst }).tcp({ sport, dport, flags: { syn: true } }) : packet6({ src, dst }).tcp({ sport, dport, flags: { syn: true } });

    test(`IPv${family}: a flow from outside the node is judged by the local destination's ingress policy`, async () => {
      const { dp } = await setup();
      const A = addr(family, "A"), world = addr(family, "world");
      // world -> A: no local source, so before the fix nothing policed it.
      expect(dp.decide(tcpSyn(world, A, 41000, 8080), { direction: "auto", now: NOW })).toMatchObject({ verdict: "drop", dropReason: "DROP_POLICY" });
      expect(dp.decide(tcpSyn(world, A, 41001, 22), { direction: "auto", now: NOW })).toMatchObject({ verdict: "pass" });
      const entry = [...dp.conntrack()].find((r) => (r.tuple as { dport: number }).dport === 22);
      expect(entry?.entry.srcSecId).toBe(ReservedIdentity.world);
    });

    test(`IPv${family}: a remote pod's identity decides, and an explicit egress direction keeps judging the source only`, async () => {
      const { dp } = await setup();
      const A = addr(family, "A"), B = addr(family, "B"), remote = addr(family, "cluster");
      // A's ingress allows B's identity (any port) and anyone on 22; the cluster identity on 8080: nothing.
      expect(dp.decide(tcpSyn(remote, A, 42000, 8080), { direction: "auto", now: NOW })).toMatchObject({ verdict: "drop", dropReason: "DROP_POLICY" });
      expect(dp.decide(tcpSyn(B, A, 42001, 9090), { direction: "auto", now: NOW })).toMatchObject({ verdict: "pass" });
      expect(dp.decide(tcpSyn(remote, A, 42002, 8080), { direction: "egress", now: NOW })).toMatchObject({ verdict: "pass" });
    });
  }
});
