// The service manager: slot layouts, ids, validation before any write, capacity, Maglev options.
import { describe, expect, test } from "vitest";
import { Datapath } from "../../host/datapath.js";
import { resolveOptions } from "../../host/config.js";
import { LB_TABLE_NAMES } from "../../host/lb/tables.js";
import { decodeServiceRecord } from "../../host/lb/records.js";
import { maglevTable } from "../../host/lb/maglev.js";
import { LB_TEST_OPTIONS, V4, backends } from "./fixtures.js";

const dump = (dp: Datapath) => Object.fromEntries(LB_TABLE_NAMES.map((t) => [t, dp.lbTables().dump(t).map((r) => Buffer.from(r).toString("hex")).sort()]));

describe("service manager", () => {
  test("v2: slots 1..N are rewritten densely and slots above N deleted", async () => {
    const dp = await Datapath.create(LB_TEST_OPTIONS);
    dp.services.upsertService({ vip: V4.vip, port: 80, proto: "tcp", backends: backends(V4, [1, 2, 3, 4]) });
    dp.services.upsertService({ vip: V4.vip, port: 80, proto: "tcp", backends: backends(V4, [1, 4]) });
    const records = dp.lbTables().dump("services4").map((r) => decodeServiceRecord(4, r)).sort((a, b) => a.slot - b.slot);
    const ids = dp.services.listServices()[0].backends.map((b) => b.id);
    expect(records.map((r) => [r.slot, r.value.backendId, r.value.count])).toEqual([[0, 0, 2], [1, ids[0], 0], [2, ids[1], 0]]);
    expect(dp.lbTables().dump("backends4").length).toBe(2);
  });

  test("legacy: freed slots keep duplicates; added backends are appended", async () => {
    const dp = await Datapath.create(LB_TEST_OPTIONS);
    const spec = { vip: V4.vip, port: 80, proto: "tcp" as const, algorithm: "legacy" as const };
    dp.services.upsertService({ ...spec, backends: backends(V4, [1, 2, 3, 4]) });
    dp.services.upsertService({ ...spec, backends: backends(V4, [1, 2]) });
    dp.services.upsertService({ ...spec, backends: backends(V4, [1, 2, 3, 4]) });
    const svc = dp.services.listServices()[0];
    const counts = new Map<number, number>();
    for (const id of svc.slots) counts.set(id, (counts.get(id) ?? 0) + 1);
    // Survivors hold two slots each, the returning backends one: the skew legacy is known for.
    expect(svc.slots.length).toBe(6);
    expect([...counts.values()].sort()).toEqual([1, 1, 2, 2]);
  });

  test("backend ids are not reused after removal (a stale flow never lands on another service's backend)", async () => {
    const dp = await Datapath.create(LB_TEST_OPTIONS);
    const first = dp.services.upsertService({ vip: V4.vip, port: 80, proto: "tcp", backends: backends(V4, [1]) }).service.backends[0].id;
    dp.services.upsertService({ vip: V4.vip, port: 80, proto: "tcp", backends: [] });
    const second = dp.services.upsertService({ vip: V4.vip, port: 81, proto: "tcp", backends: backends(V4, [2]) }).service.backends[0].id;
    expect(second).not.toBe(first);
  });

  test.each([
    [{ vip: "10.96.0.300", port: 80, proto: "tcp", backends: [] }, /service.vip/],
    [{ vip: V4.vip, port: 0, proto: "tcp", backends: [] }, /service.port/],
    [{ vip: V4.vip, port: 80, proto: "sctp", backends: [] }, /service.proto/],
    [{ vip: V4.vip, port: 80, proto: "tcp", algorithm: "roundrobin", backends: [] }, /algorithm/],
    [{ vip: V4.vip, port: 80, proto: "tcp", backends: [{ addr: "fd00::1", port: 80 }] }, /is IPv6, the VIP IPv4/],
    [{ vip: V4.vip, port: 80, proto: "tcp", backends: [{ addr: "10.0.0.1", port: 80 }, { addr: "10.0.0.1", port: 80 }] }, /listed twice/],
    [{ vip: V4.vip, port: 80, proto: "tcp", backends: [{ addr: "10.0.0.1", port: 80, weight: 256 }] }, /weight/],
    [{ vip: V4.vip, port: 80, proto: "tcp", algorithm: "maglev", backends: [{ addr: "10.0.0.1", port: 80, weight: 2 }] }, /equal share/],
    [{ vip: V4.vip, port: 80, proto: "tcp", algorithm: "maglev", maglevM: 16381, backends: [] }, /differs from the datapath's Maglev table size 251/],
    [{ vip: V4.vip, port: 80, proto: "tcp", backends: [], extra: 1 }, /service.extra: unknown key/],
  ])("bad input is refused with a message naming it, and nothing changes (%#)", async (spec, message) => {
    const dp = await Datapath.create(LB_TEST_OPTIONS);
    dp.services.upsertService({ vip: V4.vip, port: 80, proto: "tcp", backends: backends(V4, [1, 2]) });
    const before = dump(dp);
    expect(() => dp.services.upsertService(spec as never)).toThrow(message);
    expect(dump(dp)).toEqual(before);
  });

  test("a change that does not fit the services table is refused before any write", async () => {
    const dp = await Datapath.create({ ...LB_TEST_OPTIONS, lb: { ...LB_TEST_OPTIONS.lb, services: 4 } });
    dp.services.upsertService({ vip: V4.vip, port: 80, proto: "tcp", backends: backends(V4, [1, 2]) });
    const before = dump(dp);
    expect(() => dp.services.upsertService({ vip: V4.vip, port: 81, proto: "tcp", backends: backends(V4, [3]) })).toThrow(/would need 5 entries/);
    expect(dump(dp)).toEqual(before);
  });

  test("lb.maglevM must be one of the primes Cilium allows", () => {
    expect(() => resolveOptions({ lb: { maglevM: 16383 } })).toThrow(/lb.maglevM: expected one of 251, 509/);
    expect(resolveOptions({ lb: { maglevM: 65521 } }).lb.maglevM).toBe(65521);
    expect(() => resolveOptions({ lb: { services: 0 } })).toThrow(/lb.services/);
  });

  test("maglev with M <= 100 x N backends is allowed with a warning", async () => {
    const dp = await Datapath.create(LB_TEST_OPTIONS);
    const r = dp.services.upsertService({ vip: V4.vip, port: 80, proto: "tcp", algorithm: "maglev", backends: backends(V4, [1, 2, 3]) });
    expect(r.warnings).toEqual([expect.stringMatching(/Maglev table size 251 <= 100 x 3 backends/)]);
    expect(r.service.maglevRow).toBe(0);
  });
});

describe("maglev table (textbook)", () => {
  const set = (n: number) => Array.from({ length: n }, (_, i) => ({ id: i + 1, key: `10.0.${i >> 8}.${i & 255}:80/tcp` }));

  test("fills every entry, the same whatever order the backends come in", () => {
    const a = maglevTable(set(10), 251);
    const b = maglevTable([...set(10)].reverse(), 251);
    expect([...a].every((id) => id >= 1 && id <= 10)).toBe(true);
    expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(true);
  });

  test("M = 16381, N = 100: every backend's share within 1% of the mean", () => {
    const t = maglevTable(set(100), 16381);
    const counts = new Array(101).fill(0);
    for (const id of t) counts[id]++;
    const shares = counts.slice(1);
    const mean = 16381 / 100;
    expect(Math.max(...shares) / mean).toBeLessThanOrEqual(1.01);
  });
});
