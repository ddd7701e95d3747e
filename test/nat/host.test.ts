// The host side of NAT: configuration (errors name the key, nothing half
// applied), the state file and replay, the CLI, and the early-GC signal.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { resolveOptions } from "../../host/config.js";
import { Datapath } from "../../host/datapath.js";
import { encodeNat } from "../../host/nat/config.js";
import { NatGcSignal } from "../../host/nat/gc-signal.js";
import { decodeNatConfig } from "../../host/generated/layout.js";
import { cli } from "../support/run-cli.js";
import { writeCapture, LinkType } from "../../host/pcap/index.js";
import { packet4 } from "../../host/packet/build.js";
import { options, MASQ4 } from "./support.js";

const dir = mkdtempSync(join(tmpdir(), "membrane-nat-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("NAT configuration", () => {
  const bad: [unknown, string][] = [
    [{ ipv4: { address: "10.0.0.300" } }, "nat.ipv4.address: Invalid IPv4 address"],
    [{ ipv4: { address: "fd00::1" } }, "nat.ipv4.address: expected an IPv4 address"],
    [{ ipv4: {} }, "nat.ipv4.address: required"],
    [{ ipv4: { address: "1.2.3.4", clusterCidrs: ["10.0.0.1/8"] } }, "nat.ipv4.clusterCidrs[0]: \"10.0.0.1/8\" has host bits set"],
    [{ ipv4: { address: "1.2.3.4", excludedCidrs: ["10.0.0.0/33"] } }, "nat.ipv4.excludedCidrs[0]: prefix length"],
    [{ ipv6: { address: "fd00::1", clusterCidrs: Array(9).fill("fd00::/16") } }, "nat.ipv6.clusterCidrs: at most 8 prefixes"],
    [{ ipv4: { address: "1.2.3.4" }, ports: { min: 2000, max: 1000 } }, "nat.ports: min (2000) is above max (1000)"],
    [{ ipv4: { address: "1.2.3.4" }, ports: { min: 0 } }, "nat.ports.min: expected an integer from 1 to 65535"],
    [{ ipv4: { address: "1.2.3.4" }, retries: 129 }, "nat.retries: expected an integer from 0 to 128"],
    [{ ipv4: { address: "1.2.3.4" }, entries: 1 }, "nat.entries: expected an integer from 2"],
    [{ ipv4: { address: "1.2.3.4" }, portz: 1 }, "nat.portz: unknown key"],
    [{ seed: 1 }, "nat: set ipv4 and/or ipv6"],
    ["on", "nat: expected an object"],
  ];
  for (const [nat, message] of bad) {
    test(`refuses ${JSON.stringify(nat)}`, () => {
      expect(() => resolveOptions({ nat } as never)).toThrow(message);
    });
  }

  test("defaults are Cilium 1.5's, resolved options are valid options again, and the encoding carries masks", async () => {
    const r = resolveOptions({ nat: { ipv4: { address: "192.0.2.1", clusterCidrs: ["10.0.0.0/8"] }, seed: 4 } });
    expect(r.nat).toMatchObject({ ports: { min: 1024, max: 65535 }, retries: 16, entries: 524_288, seed: 4 });
    expect(resolveOptions(r).nat).toEqual(r.nat);
    const c = decodeNatConfig(encodeNat(r.nat));
    expect([c.flags, c.addr4, c.portMin, c.portMax, c.cluster4Count, c.maxEntries6]).toEqual([1, 0xc0000201, 1024, 65535, 1, 0]);
    expect(c.cluster4[0]).toEqual({ addr: 0x0a000000, mask: 0xff000000 });
    const dp = await Datapath.create(resolveOptions({ ...r, nat: { ...r.nat!, entries: 64 } }));
    expect(dp.nat.list()).toEqual([]);
  });
});

describe("state file, replay and CLI", () => {
  test("replay --config with nat prints the NAT table", async () => {
    const state = join(dir, "state.json");
    writeFileSync(state, JSON.stringify({ nat: { ipv4: { address: MASQ4, clusterCidrs: ["10.0.0.0/8"] }, seed: 1, entries: 64 }, conntrack: { tcpEntries: 1024, otherEntries: 1024 } }));
    const cap = join(dir, "nat.pcap");
    writeFileSync(cap, writeCapture(LinkType.Raw, [
      { timestampNs: 1_000_000_000n, data: packet4({ src: "10.0.1.10", dst: "198.51.100.7" }).udp({ sport: 5000, dport: 53 }) },
    ]));
    const r = await cli("replay", cap, "--config", state, "--direction", "egress");
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/NAT \(2 entries, 1 mappings\):/);
    expect(r.out).toMatch(/nat4\s+egress\s+UDP\s+10\.0\.1\.10:5000 -> 198\.51\.100\.7:53\s+source 192\.0\.2\.1:5000/);
    expect(r.out).toMatch(/nat4\s+ingress\s+UDP\s+198\.51\.100\.7:53 -> 192\.0\.2\.1:5000\s+destination 10\.0\.1\.10:5000/);
    const bad = join(dir, "bad.json");
    writeFileSync(bad, JSON.stringify({ nat: { ipv4: { address: "nope" } } }));
    const e = await cli("replay", cap, "--config", bad);
    expect(e.code).toBe(2);
    expect(e.err).toContain("nat.ipv4.address");
  });

  test("bpf nat: bad verbs, tables and pins are clear errors", async () => {
    expect((await cli("bpf", "nat", "frob")).err).toContain('bpf nat: expected "list" or "flush"');
    expect((await cli("bpf", "nat", "list", "--table", "nat5")).err).toContain("--table: expected one of nat4, nat6");
    const r = await cli("bpf", "nat", "flush", "--pin-dir", join(dir, "nothing"));
    expect(r.code).toBe(2);
    expect(r.err).toContain("no pinned NAT map there");
  });
});

describe("early GC signal", () => {
  test("fires once per change, at most every 10 s", () => {
    let requests = 0;
    const s = new NatGcSignal(() => requests);
    expect(s.due(100)).toBe(false);
    requests = 3;
    expect(s.due(100)).toBe(true);
    expect(s.due(101)).toBe(false);
    requests = 4;
    expect(s.due(105)).toBe(false); // too soon after the last early run
    expect(s.due(110)).toBe(true);
  });

  test("a Wasm datapath's exhaustion moves it", async () => {
    const dp = await Datapath.create(options({ ports: { min: 6000, max: 6000 }, retries: 0 }));
    const s = new NatGcSignal(() => dp.nat.gcRequests());
    dp.decide(packet4({ src: "10.0.1.1", dst: "198.51.100.7" }).udp({ sport: 1, dport: 53 }), { now: 50, direction: "egress" });
    expect(s.due(50)).toBe(false);
    dp.decide(packet4({ src: "10.0.1.2", dst: "198.51.100.7" }).udp({ sport: 1, dport: 53 }), { now: 50, direction: "egress" });
    expect(s.due(50)).toBe(true);
  });
});

describe("snapshots", () => {
  test("a conntrack snapshot carries the NAT mappings along: replies still translate after a restart", async () => {
    const { takeSnapshot, restoreSnapshot } = await import("../../host/conntrack/snapshot.js");
    const a = await Datapath.create(options());
    const out = a.decide(packet4({ src: "10.0.1.10", dst: "198.51.100.7" }).udp({ sport: 5000, dport: 53 }), { now: 100, direction: "egress" });
    expect(out.verdict).toBe("pass");
    const snap = takeSnapshot(a);
    const b = await Datapath.create(options());
    expect(restoreSnapshot(b, snap)).toEqual({ tcp4: 0, any4: 1, tcp6: 0, any6: 0, frag4: 0, frag6: 0 });
    expect(b.nat.list().map((r) => r.key)).toEqual(a.nat.list().map((r) => r.key));
    const back = b.decide(packet4({ src: "198.51.100.7", dst: MASQ4 }).udp({ sport: 53, dport: 5000 }), { now: 101, direction: "ingress" });
    expect([back.verdict, back.ct]).toEqual(["pass", "reply"]);
    // Without NAT configured, the mappings are left out and the connections still restore.
    const plain = await Datapath.create({ conntrack: { tcpEntries: 64, otherEntries: 64 } });
    expect(restoreSnapshot(plain, snap).any4).toBe(1);
    expect(plain.nat.list()).toEqual([]);
  });
});
