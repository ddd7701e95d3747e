// Conntrack snapshots are checked whole before anything is restored (issue 19, failure 6): flipped bits
// (the checksum), and records that are well-formed bytes but impossible in their table, each resealed with a
// valid checksum so that only the record check can catch it. A refused snapshot restores nothing at all.
import { createHash } from "node:crypto";
import { beforeAll, describe, expect, test } from "vitest";
import { Datapath } from "../../host/datapath.js";
import { packet4, packet6 } from "../../host/packet/build.js";
import {
  encodeSnapshot, parseSnapshot, restoreSnapshot, takeSnapshot, SnapshotRefusedError, type ParsedSnapshot, type SnapshotTable,
} from "../../host/conntrack/snapshot.js";
import { CT_ENTRY, CT_TUPLE4, CT_TUPLE6, encodeCtEntry, encodeCtTuple4 } from "../../host/generated/layout.js";

const NOW = 5000;
const OPTIONS = { conntrack: { tcpEntries: 256, otherEntries: 256 } };
let snapshot: Uint8Array;

/** A datapath with a TCP connection, UDP flows of both families and an ICMP echo, decided at NOW. */
async function busyDatapath(): Promise<Datapath> {
  const dp = await Datapath.create(OPTIONS);
  const a = { src: "10.0.1.2", dst: "10.0.2.2" };
  for (const [p, direction] of [
    [packet4(a).tcp({ sport: 40000, dport: 80, flags: { syn: true } }), "egress"],
    [packet4({ src: a.dst, dst: a.src }).tcp({ sport: 80, dport: 40000, flags: { syn: true, ack: true } }), "ingress"],
    [packet4(a).tcp({ sport: 40000, dport: 80, flags: { ack: true } }), "egress"],
    [packet4(a).udp({ sport: 5000, dport: 53 }), "egress"],
    [packet4(a).udp({ sport: 5001, dport: 53 }), "egress"],
    [packet4(a).icmpEcho({ request: true, id: 7, seq: 1 }), "egress"],
    [packet6({ src: "fd00::1", dst: "fd00::2" }).udp({ sport: 6000, dport: 53 }), "egress"],
  ] as const) {
    expect(dp.decide(p, { now: NOW, direction }).verdict).toBe("pass");
  }
  return dp;
}

const tableOf = (s: ParsedSnapshot, name: string): SnapshotTable => s.tables.find((t) => t.table === name)!;
const ctCount = (dp: Datapath) => (["tcp4", "any4", "tcp6", "any6", "frag4", "frag6"] as const).reduce((n, t) => n + dp.tableInfo(t).count, 0);

/** The snapshot with `edit` applied to copies of its tables, resealed (a correct checksum over the edited body). */
function forge(edit: (tables: SnapshotTable[]) => void): Uint8Array {
  const parsed = parseSnapshot(snapshot);
  const tables = parsed.tables.map((t) => ({ ...t, records: t.records.map((r) => r.slice()) }));
  edit(tables);
  return encodeSnapshot(parsed.meta, tables);
}

/** Restoring `bytes` into a fresh datapath is refused with `message`, and the datapath stays empty. */
async function expectRefused(bytes: Uint8Array, message: RegExp | string): Promise<void> {
  const dp = await Datapath.create(OPTIONS);
  let error: unknown;
  try {
    restoreSnapshot(dp, bytes, "snapshot test.snap");
  } catch (err) {
    error = err;
  }
  expect(error).toBeInstanceOf(SnapshotRefusedError);
  expect((error as Error).message).toMatch(message);
  expect((error as Error).message).toContain("test.snap");
  expect(ctCount(dp)).toBe(0);
  expect(dp.nat.info("nat4").count).toBe(0);
}

beforeAll(async () => {
  snapshot = takeSnapshot(await busyDatapath(), { now: NOW });
});

describe("conntrack snapshot checks (issue 19, failure 6)", () => {
  test("the snapshot as written restores every connection, and the count is the entries in the table", async () => {
    const dp = await Datapath.create(OPTIONS);
    const restored = restoreSnapshot(dp, snapshot);
    expect(restored).toEqual({ tcp4: 1, any4: 3, tcp6: 0, any6: 1, frag4: 0, frag6: 0 });
    for (const t of ["tcp4", "any4", "any6"] as const) expect(dp.tableInfo(t).count).toBe(restored[t]);
  });

  test("a flipped bit anywhere after the header's checksum is refused whole: checksum mismatch", async () => {
    // Bits in the header, a table header, a key and a value (the last record's packet counter).
    for (const at of [50, 100, 120, snapshot.length - 40]) {
      const damaged = snapshot.slice();
      damaged[at] ^= 0x10;
      await expectRefused(damaged, /checksum mismatch: the file is damaged/);
    }
  });

  test("a truncated snapshot is refused: checksum mismatch, not a partial restore", async () => {
    await expectRefused(snapshot.subarray(0, snapshot.length - 70), /checksum mismatch|do not fit/);
  });

  test("a snapshot of the old format (no checksum) is refused, saying which version this build reads", async () => {
    const old = snapshot.slice();
    new DataView(old.buffer).setUint32(4, 1, true);
    await expectRefused(old, "format version 1, this build reads version 2 (written by an older membrane, without a checksum)");
  });

  test("a TCP tuple in the non-TCP table is refused, naming the table, the record and its byte", async () => {
    const forged = forge((tables) => { tableOf({ tables } as ParsedSnapshot, "any4").records[0][CT_TUPLE4.offsets.nexthdr] = 6; });
    await expectRefused(forged, /table any4, record 0: a TCP tuple in non-TCP table any4 \(byte \d+\)/);
  });

  test("a UDP tuple in the TCP table is refused", async () => {
    const forged = forge((tables) => { tableOf({ tables } as ParsedSnapshot, "tcp4").records[0][CT_TUPLE4.offsets.nexthdr] = 17; });
    await expectRefused(forged, "table tcp4, record 0: protocol 17 in TCP table tcp4");
  });

  test("an ICMPv6 tuple in an IPv4 table (the wrong family) is refused", async () => {
    const forged = forge((tables) => {
      const any4 = tableOf({ tables } as ParsedSnapshot, "any4");
      const icmp = any4.records.findIndex((r) => r[CT_TUPLE4.offsets.nexthdr] === 1);
      any4.records[icmp][CT_TUPLE4.offsets.nexthdr] = 58;
    });
    await expectRefused(forged, /ICMPv6 tuple in IPv4 table any4/);
  });

  test("the same key twice is refused (restoring it would count two connections for one entry)", async () => {
    const forged = forge((tables) => {
      const any4 = tableOf({ tables } as ParsedSnapshot, "any4");
      any4.records.push(any4.records[0].slice());
    });
    await expectRefused(forged, "table any4, record 3: duplicate key (the same connection twice)");
  });

  test("a lifetime of 0xffffffff is refused", async () => {
    const forged = forge((tables) => {
      const r = tableOf({ tables } as ParsedSnapshot, "any6").records[0];
      new DataView(r.buffer, r.byteOffset).setUint32(CT_TUPLE6.size + CT_ENTRY.offsets.lifetime, 0xffffffff, true);
    });
    await expectRefused(forged, "table any6, record 0: lifetime 0xffffffff (never expires)");
  });

  test("a lifetime further ahead of the snapshot's clock than any timeout it was written with is refused", async () => {
    const forged = forge((tables) => {
      const r = tableOf({ tables } as ParsedSnapshot, "tcp4").records[0];
      new DataView(r.buffer, r.byteOffset).setUint32(CT_TUPLE4.size + CT_ENTRY.offsets.lifetime, NOW + 21_600 + 1, true);
    });
    await expectRefused(forged, `lifetime ${NOW + 21_601} is more than the horizon (21600 s) past the snapshot's clock (${NOW})`);
  });

  test("an entry created after the snapshot was taken is refused", async () => {
    const forged = forge((tables) => {
      const r = tableOf({ tables } as ParsedSnapshot, "tcp4").records[0];
      new DataView(r.buffer, r.byteOffset).setUint32(CT_TUPLE4.size + CT_ENTRY.offsets.created, NOW + 1, true);
    });
    await expectRefused(forged, `created at ${NOW + 1}, after the snapshot's clock (${NOW})`);
  });

  test("unknown tuple flags and entry flags are refused", async () => {
    await expectRefused(forge((tables) => { tableOf({ tables } as ParsedSnapshot, "tcp4").records[0][CT_TUPLE4.offsets.flags] = 3; }), "tuple flags 3 are none of");
    await expectRefused(forge((tables) => { tableOf({ tables } as ParsedSnapshot, "tcp4").records[0][CT_TUPLE4.size + CT_ENTRY.offsets.flags] = 0x80; }), "entry flags 0x80 have bits outside 0x7");
  });

  test("a bad record in the last table leaves the tables before it untouched: never half restored", async () => {
    // tcp4 and any4 come first and are fine; any6 is not.
    const forged = forge((tables) => {
      const r = tableOf({ tables } as ParsedSnapshot, "any6").records[0];
      r[CT_TUPLE6.offsets.nexthdr] = 6;
    });
    await expectRefused(forged, "table any6, record 0: a TCP tuple in non-TCP table any6");
  });

  test("a snapshot of 200,000 connections is written and restored whole (no records spread into a call)", async () => {
    const n = 200_000;
    const big = await Datapath.create({ conntrack: { tcpEntries: 262_144, otherEntries: 1024 } });
    const records = Array.from({ length: n }, (_, i) => {
      const r = new Uint8Array(CT_TUPLE4.size + CT_ENTRY.size);
      encodeCtTuple4({ saddr: 0x0a000000 | i, daddr: 0x0ac80002, sport: 40000, dport: 80, nexthdr: 6, flags: 0 }, r);
      encodeCtEntry({ rxPackets: 1n, rxBytes: 60n, txPackets: 1n, txBytes: 60n, lifetime: NOW + 60, backendId: 0, srcSecId: 0, revNatIndex: 0, txFlagsSeen: 2, rxFlagsSeen: 0x12, flags: 0, created: NOW }, r, CT_TUPLE4.size);
      return r;
    });
    expect(big.restoreTable("tcp4", records)).toBe(n);
    const bytes = takeSnapshot(big, { now: NOW });
    const again = await Datapath.create({ conntrack: { tcpEntries: 262_144, otherEntries: 1024 } });
    expect(restoreSnapshot(again, bytes).tcp4).toBe(n);
    expect(again.tableInfo("tcp4").count).toBe(n);
  });

  test("the checksum covers the whole body: it is the SHA-256 the header carries", () => {
    const sum = createHash("sha256").update(snapshot.subarray(40)).digest();
    expect(Buffer.from(snapshot.subarray(8, 40)).equals(sum)).toBe(true);
  });
});
