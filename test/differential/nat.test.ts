// NAT through both datapaths, compared packet by packet (verdict, reason,
// output bytes) and table by table, NAT tables and counters included:
// named scenarios and seeded mixes with a tiny port range (collisions and
// exhaustion).
import { afterAll, expect, test } from "vitest";
import { compareTables, createPair, decideBoth, runDifferential, type DiffEvent, type Pair } from "./harness.js";
import { kernelUnavailable } from "./kernel-available.js";
import { MIX_MASQ4, MIX_MASQ6, natMix } from "./nat-mix.js";
import type { DatapathOptions } from "../../host/config.js";
import { NAT_TABLE_NAMES } from "../../host/nat/tables.js";
import { decodeNatRecord } from "../../host/nat/records.js";
import { ethernet, packet4, packet6 } from "../../host/packet/build.js";
import { verifyChecksums } from "../../host/packet/checksum.js";
import { icmpChecksumVerifies } from "../nat/support.js";
import { describeIf } from "../support/describe-if.js";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

/** The first difference between the NAT tables or NAT counters of the pair, or undefined. */
export function compareNat(pair: Pair): string | undefined {
  for (const t of NAT_TABLE_NAMES) {
    const w = pair.wasm.nat.dump(t).map(hex).sort();
    const k = pair.kernel.nat.dump(t).map(hex).sort();
    const onlyW = w.filter((r) => !k.includes(r));
    const onlyK = k.filter((r) => !w.includes(r));
    const show = (r: string) => JSON.stringify({ ...decodeNatRecord(t, Buffer.from(r, "hex")), key: undefined });
    if (onlyW.length) return `${t}: only in Wasm: ${onlyW.map(show).join("; ")}${onlyK.length ? `; only in the kernel: ${onlyK.map(show).join("; ")}` : ""}`;
    if (onlyK.length) return `${t}: only in the kernel: ${onlyK.map(show).join("; ")}`;
  }
  const plain = (s: object) => JSON.stringify(s, (_, v) => (typeof v === "bigint" ? Number(v) : v));
  const sw = plain(pair.wasm.nat.stats()), sk = plain(pair.kernel.nat.stats());
  return sw === sk ? undefined : `NAT counters differ:\n  wasm:   ${sw}\n  kernel: ${sk}`;
}

function natOptions(ports: { min: number; max: number }, retries: number): DatapathOptions {
  return {
    hashSeed: 5,
    conntrack: { tcpEntries: 4096, otherEntries: 4096 },
    fragments: { entries: 64 },
    nat: {
      ipv4: { address: MIX_MASQ4, clusterCidrs: ["10.0.0.0/8"] },
      ipv6: { address: MIX_MASQ6, clusterCidrs: ["fd00::/16"] },
      ports, retries, entries: 2048, seed: 99,
    },
  };
}

/** Runs events in slices, comparing NAT state between slices too. */
function runChecked(pair: Pair, events: Iterable<DiffEvent>, every = 50): { packets: number; divergence?: string } {
  let packets = 0;
  let batch: DiffEvent[] = [];
  const flush = () => {
    const r = runDifferential(pair, batch, every);
    packets += r.packets;
    batch = [];
    return r.divergence ?? compareNat(pair);
  };
  for (const e of events) {
    batch.push(e);
    if (batch.length === every) {
      const d = flush();
      if (d) return { packets, divergence: d };
    }
  }
  const d = flush();
  return { packets, divergence: d };
}

describeIf("differential: NAT (Wasm vs kernel)", kernelUnavailable(), () => {
  const pairs: Pair[] = [];
  afterAll(() => pairs.forEach((p) => p.close()));

  test("named: collision, exhaustion with two ports, recovery after GC", async () => {
    const pair = await createPair(natOptions({ min: 6000, max: 6001 }, 4));
    pairs.push(pair);
    const f = (src: string) => ethernet({ etherType: 0x0800 }, packet4({ src, dst: "198.51.100.1" }).udp({ sport: 6000, dport: 53 }));
    const events: DiffEvent[] = [
      { kind: "packet", frame: f("10.0.1.1"), direction: "egress", now: 100, note: "keeps 6000" },
      { kind: "packet", frame: f("10.0.1.2"), direction: "egress", now: 100, note: "collides, takes 6001" },
      { kind: "packet", frame: f("10.0.1.3"), direction: "egress", now: 100, note: "exhausted" },
      { kind: "gc", now: 161 },
      { kind: "packet", frame: f("10.0.1.3"), direction: "egress", now: 161, note: "recovered" },
    ];
    const r = runChecked(pair, events, 1);
    expect(r.divergence).toBeUndefined();
    expect(pair.wasm.nat.stats().nat4.allocFailed).toBe(1n);
  });

  test("ICMP and ICMPv6 echo below a range from 32768: remapped identically, replies translated back, checksums right", async () => {
    const pair = await createPair(natOptions({ min: 32768, max: 65534 }, 16));
    pairs.push(pair);
    const range = 65534 - 32768 + 1;
    // Every output is compared byte for byte; the checksums are then checked apart from both engines.
    const run = (pkt: Uint8Array, direction: "egress" | "ingress", note: string) => {
      const e = { kind: "packet" as const, frame: ethernet({ etherType: pkt[0] >> 4 === 4 ? 0x0800 : 0x86dd }, pkt), direction, now: 500, note };
      const r = decideBoth(pair, e, 0);
      expect(r.divergence).toBeUndefined();
      const ip = r.wasm.data.subarray(14);
      expect(verifyChecksums(ip, 0).problems, note).toEqual([]);
      expect(icmpChecksumVerifies(ip), note).toBe(true);
      return { verdict: r.wasm, ip };
    };
    const ids = [1, 2, 7, 777, 4404, 32767];
    for (const v6 of [false, true]) {
      const [pod, remote, masq] = v6 ? ["fd00:1::5", "2001:db8:7::9", MIX_MASQ6] : ["10.0.1.5", "198.51.100.9", MIX_MASQ4];
      const echo = (src: string, dst: string, request: boolean, id: number) => {
        const spec = { request, id, seq: id & 0xff, payload: new Uint8Array(40).fill(id & 0xff) };
        return v6 ? packet6({ src, dst }).icmp6Echo(spec) : packet4({ src, dst }).icmpEcho(spec);
      };
      const l4 = v6 ? 40 : 20;
      const translated = ids.map((id) => {
        const { verdict, ip } = run(echo(pod, remote, true, id), "egress", `IPv${v6 ? 6 : 4} request id ${id}`);
        expect(verdict.verdict).toBe("pass");
        return (ip[l4 + 4] << 8) | ip[l4 + 5];
      });
      // Below the range, fresh and free: each takes its first candidate, min + id % range.
      expect(translated).toEqual(ids.map((id) => 32768 + (id % range)));
      ids.forEach((id, i) => {
        const { verdict, ip } = run(echo(remote, masq, false, translated[i]), "ingress", `IPv${v6 ? 6 : 4} reply id ${translated[i]}`);
        expect([verdict.verdict, verdict.ct]).toEqual(["pass", "reply"]);
        expect((ip[l4 + 4] << 8) | ip[l4 + 5]).toBe(id);
      });
    }
    expect(compareTables(pair)).toBeUndefined();
    expect(compareNat(pair)).toBeUndefined();
    expect(pair.wasm.nat.stats().nat4.created).toBe(BigInt(ids.length));
    expect(pair.wasm.nat.stats().nat6.created).toBe(BigInt(ids.length));
  });

  for (const [name, ports, retries, count] of [
    ["tiny range (4 ports, 3 retries): constant collisions and exhaustion", { min: 40000, max: 40003 }, 3, 2500],
    ["small range (64 ports, 16 retries)", { min: 1024, max: 1087 }, 16, 2500],
  ] as const) {
    test(`seeded mix, ${name}`, { timeout: 120_000 }, async () => {
      const pair = await createPair(natOptions(ports, retries));
      pairs.push(pair);
      const r = runChecked(pair, natMix(4242 + count + retries, count, pair.wasm.nat));
      expect(r.divergence).toBeUndefined();
      const s = pair.wasm.nat.stats();
      // The mix must exercise what it claims to.
      expect(s.nat4.created + s.nat6.created).toBeGreaterThan(20n);
      expect(s.nat4.collisions + s.nat6.collisions).toBeGreaterThan(0n);
      if (retries === 3) expect(s.nat4.allocFailed + s.nat6.allocFailed).toBeGreaterThan(0n);
      const drops = pair.wasm.counters().drops;
      expect(drops.some((d) => d.reason === "DROP_NAT_NO_MAPPING")).toBe(true);
      expect(r.packets).toBeGreaterThan(count * 0.9);
    });
  }
});
