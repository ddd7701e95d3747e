// Table operations of the Wasm core: GC, flush, dump and restore, stats, memory.
import { describe, expect, test } from "vitest";
import { Datapath } from "../../host/index.js";
import { packet4, packet6 } from "../../host/packet/build.js";

const syn = (sport: number) => packet4({ src: "10.0.0.1", dst: "10.0.0.2" }).tcp({ sport, dport: 80, flags: { syn: true } });
const udp = (sport: number) => packet4({ src: "10.0.0.1", dst: "10.0.0.2" }).udp({ sport, dport: 53 });
const udp6 = (sport: number) => packet6({ src: "fd00::1", dst: "fd00::2" }).udp({ sport, dport: 53 });

async function small(whenFull: "evict-lru" | "drop" = "evict-lru") {
  return Datapath.create({ conntrack: { tcpEntries: 64, otherEntries: 64, whenFull }, hashSeed: 7 });
}

describe("conntrack tables", () => {
  test("GC deletes exactly the expired entries and counts them", async () => {
    const dp = await small();
    for (let p = 1; p <= 10; p++) dp.decide(syn(p), { now: 100 });      // SYN timeout: 60 s
    for (let p = 1; p <= 5; p++) dp.decide(udp(p), { now: 130 });       // 60 s from 130
    const results = dp.gc(161);
    expect(results.find((r) => r.table === "tcp4")).toEqual({ table: "tcp4", deleted: 10, scanned: 10 });
    expect(results.find((r) => r.table === "any4")).toEqual({ table: "any4", deleted: 0, scanned: 5 });
    expect([...dp.conntrack("tcp4")]).toHaveLength(0);
    expect([...dp.conntrack("any4")]).toHaveLength(5);
    const stats = dp.counters().tables;
    expect(stats.tcp4.gcDeleted).toBe(10n);
    expect(stats.tcp4.gcRuns).toBe(1n);
    expect(stats.any4.entries).toBe(5n);
    // An entry is alive through its lifetime second and expired after it.
    expect(dp.gc(190).find((r) => r.table === "any4")?.deleted).toBe(0);
    expect(dp.gc(191).find((r) => r.table === "any4")?.deleted).toBe(5);
  });

  test("slots freed by GC are reused: a full table accepts new flows after GC", async () => {
    const dp = await small("drop");
    for (let p = 1; p <= 64; p++) expect(dp.decide(syn(p), { now: 100 }).verdict).toBe("pass");
    expect(dp.decide(syn(65), { now: 100 }).dropReason).toBe("DROP_CT_CREATE_FAILED");
    expect(dp.counters().tables.tcp4.createFailed).toBe(1n);
    dp.gc(200);
    for (let p = 100; p < 164; p++) expect(dp.decide(syn(p), { now: 200 }).ct).toBe("new");
    expect(dp.tableInfo("tcp4").count).toBe(64);
  });

  test("flush empties every table", async () => {
    const dp = await small();
    dp.decide(syn(1), { now: 1 });
    dp.decide(udp6(1), { now: 1 });
    dp.flush();
    expect([...dp.conntrack()]).toHaveLength(0);
    expect(dp.decide(syn(1), { now: 1 }).ct).toBe("new");
  });

  test("dump and restore carry established flows into a new instance", async () => {
    const a = await small();
    a.decide(syn(1), { now: 10 });
    a.decide(packet4({ src: "10.0.0.2", dst: "10.0.0.1" }).tcp({ sport: 80, dport: 1, flags: { syn: true, ack: true } }), { now: 10 });
    a.decide(udp6(9), { now: 10 });
    const b = await small();
    expect(b.restoreTable("tcp4", a.dumpTable("tcp4"))).toBe(1);
    expect(b.restoreTable("any6", a.dumpTable("any6"))).toBe(1);
    expect([...b.conntrack()].map((r) => [r.table, r.key, r.entry])).toEqual([...a.conntrack()].map((r) => [r.table, r.key, r.entry]));
    expect(b.decide(packet4({ src: "10.0.0.2", dst: "10.0.0.1" }).tcp({ sport: 80, dport: 1, flags: { ack: true } }), { now: 11 }).ct).toBe("reply");
    expect(() => b.restoreTable("tcp4", [new Uint8Array(3)])).toThrow("expected 70");
  });

  test("deleteEntry removes one flow by its key", async () => {
    const dp = await small();
    dp.decide(udp(1), { now: 1 });
    dp.decide(udp(2), { now: 1 });
    const [first] = [...dp.conntrack("any4")];
    expect(dp.deleteEntry("any4", first.key)).toBe(true);
    expect(dp.deleteEntry("any4", first.key)).toBe(false);
    expect([...dp.conntrack("any4")].map((r) => r.tuple.sport)).toEqual([2]);
  });

  test("memory per conntrack entry stays within 1.5x of key + value", async () => {
    const dp = await Datapath.create({ conntrack: { tcpEntries: 100_000, otherEntries: 50_000 } });
    for (const table of ["tcp4", "any4", "tcp6", "any6"] as const) {
      const info = dp.tableInfo(table);
      const ratio = info.bytes / info.capacity / (info.keySize + info.valueSize);
      expect(ratio, table).toBeLessThanOrEqual(1.5);
      expect(ratio, table).toBeGreaterThanOrEqual(1);
    }
  });
});

describe("datapath options", () => {
  test.each([
    [{ conntrack: { tcpEntries: 0 } }, "conntrack.tcpEntries: expected an integer from 1 to 16777216, got 0"],
    [{ conntrack: { timeouts: { tcpp: 5 } } }, "conntrack.timeouts.tcpp: unknown key"],
    [{ conntrack: { whenFull: "panic" } }, "conntrack.whenFull: expected one of"],
    [{ fragments: { timeout: -1 } }, "fragments.timeout: expected an integer"],
    [{ conntrack: [] }, "conntrack: expected an object"],
  ])("rejects %j", async (options, message) => {
    await expect(Datapath.create(options as never)).rejects.toThrow(message);
  });

  test("tables too large for Wasm memory are a clear error", async () => {
    await expect(Datapath.create({ conntrack: { tcpEntries: 16 * 1024 * 1024, otherEntries: 16 * 1024 * 1024 } }))
      .rejects.toThrow("do not fit in Wasm linear memory");
  });

  test("batches refuse packets they cannot hold", async () => {
    const dp = await small();
    const batch = dp.createBatch(1, { bufferSize: 256, headroom: 64 });
    expect(() => batch.push(new Uint8Array(193))).toThrow("exceed the batch buffer");
    batch.push(syn(1));
    expect(() => batch.push(syn(2))).toThrow("the batch holds 1 packets");
    expect(() => dp.createBatch(0)).toThrow("capacity must be");
  });
});
