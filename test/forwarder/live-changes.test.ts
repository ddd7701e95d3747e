// A running forwarder takes changes without a restart: commands travel over a real MessageChannel to the
// worker's inbox and are applied between batches (Forwarder's betweenBatches hook), here on the in-memory TUN
// device so every packet can be checked. Established flows keep their conntrack entry and backend; new flows
// follow the new state from the next batch; a refused change leaves every table byte for byte as it was.
import { MessageChannel } from "node:worker_threads";
import { afterEach, describe, expect, test } from "vitest";
import { Datapath } from "../../host/datapath.js";
import { FakeTun } from "../../host/tun/fake-tun.js";
import { Forwarder } from "../../host/forwarder/forwarder.js";
import { CommandApplier } from "../../host/forwarder/command-applier.js";
import { CommandInbox } from "../../host/forwarder/command-inbox.js";
import { CommandClient } from "../../host/forwarder/command-client.js";
import type { CommandResult, ForwarderCommand } from "../../host/forwarder/commands.js";
import { packet4 } from "../../host/packet/build.js";
import { decodePacket } from "../../host/packet/decode.js";
import { PolicyEngine } from "../../host/policy/engine.js";
import { TABLE_NAMES } from "../../host/wasm/core.js";
import { LB_TABLE_NAMES } from "../../host/lb/tables.js";
import { POLICY_TABLE_NAMES } from "../../host/policy/tables.js";
import { NAT_TABLE_NAMES } from "../../host/nat/tables.js";
import type { DatapathOptions } from "../../host/config.js";
import { cnp, ep } from "../policy/helpers.js";

const CLIENT = "10.0.1.2", VIP = "10.96.0.10", B1 = "10.0.2.11", B2 = "10.0.2.12", VIP2 = "10.96.0.20";
const NODE = "192.0.2.1", OUTSIDE = "93.184.216.34";

const syn = (src: string, dst: string, sport: number, dport: number) => packet4({ src, dst }).tcp({ sport, dport, flags: { syn: true } });
const ack = (src: string, dst: string, sport: number, dport: number) => packet4({ src, dst }).tcp({ sport, dport, flags: { ack: true } });
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

const closers: Array<() => void> = [];
afterEach(() => closers.splice(0).forEach((c) => c()));

/** A forwarder on the fake device with the worker's command plumbing: client -> MessageChannel -> inbox -> applier. */
async function liveForwarder(options: DatapathOptions = {}) {
  let now = 1000;
  const dp = await Datapath.create({ conntrack: { tcpEntries: 1024, otherEntries: 1024 }, lb: { services: 16, backends: 8 }, ...options });
  const tun = new FakeTun({ mtu: 1500 });
  const { port1, port2 } = new MessageChannel();
  const fwd: Forwarder = new Forwarder(dp, tun, { batchSize: 16, clock: () => now, betweenBatches: () => inbox.drain() });
  const inbox = new CommandInbox(port2, new CommandApplier(dp, { clock: () => now, batches: () => fwd.stats.batches }));
  const client = new CommandClient(port1);
  closers.push(() => { client.close(); inbox.close(); });
  /** Sends `command` while the forwarder runs: it lands before the next batch, whose packets it decides. */
  async function apply(command: ForwarderCommand, ...nextBatch: Uint8Array[]): Promise<CommandResult> {
    const reply = client.apply(command);
    for (const p of nextBatch) tun.inject(p);
    fwd.step();
    return reply;
  }
  /** Forwards `packets` as one batch; what came out, decoded. */
  function forward(...packets: Uint8Array[]) {
    for (const p of packets) tun.inject(p);
    fwd.step();
    return tun.drainWritten().map((w) => decodePacket(w.packet, "ip"));
  }
  /** Every table of the datapath, as bytes: conntrack, NAT, services, policy. */
  function dumpAll(): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    for (const t of TABLE_NAMES) out[`ct.${t}`] = dp.dumpTable(t).map(hex).sort();
    for (const t of NAT_TABLE_NAMES) out[`nat.${t}`] = dp.nat.dump(t).map(hex).sort();
    for (const t of LB_TABLE_NAMES) out[`lb.${t}`] = dp.lbTables().dump(t).map(hex).sort();
    for (const t of POLICY_TABLE_NAMES) out[`policy.${t}`] = dp.policyTables().dump(t).map(([k, v]) => hex(k) + hex(v)).sort();
    return out;
  }
  const tick = (s: number) => { now += s; };
  return { dp, tun, fwd, apply, forward, dumpAll, tick, inbox };
}

const service = (vip: string, ...backends: string[]) => ({ vip, port: 80, proto: "tcp" as const, backends: backends.map((addr) => ({ addr, port: 8080 })) });

describe("a running forwarder takes service changes", () => {
  test("a new service, then a backend removal: the established flow keeps its entry and backend, new flows follow", async () => {
    const f = await liveForwarder();
    // Before the service exists the VIP is just an address: the SYN passes untranslated.
    expect(f.forward(syn(CLIENT, VIP, 30000, 80)).map((p) => p.dst)).toEqual([VIP]);

    // The command and a SYN to the VIP arrive together: the SYN is in the batch after the change, so it is DNATed.
    const added = await f.apply({ kind: "services", upsert: [service(VIP, B1, B2)] });
    expect(added).toMatchObject({ ok: true, kind: "services", summary: "services: 1 upserted, 0 deleted" });
    const firstNew = f.forward(syn(CLIENT, VIP, 30001, 80));
    expect(firstNew.map((p) => [p.dst, p.dport])).toEqual([[expect.stringMatching(/^10\.0\.2\.1[12]$/), 8080]]);

    // Flows through the service until both backends have one.
    const backendOf = new Map<number, string>();
    for (let sport = 31000; new Set(backendOf.values()).size < 2; sport++) {
      const [p] = f.forward(syn(CLIENT, VIP, sport, 80));
      backendOf.set(sport, p.dst);
    }
    const kept = [...backendOf].find(([, b]) => b === B1)![0];
    const entryOf = (sport: number) => [...f.dp.conntrack("tcp4")].filter((r) => r.tuple.sport === sport || r.tuple.dport === sport);
    const before = entryOf(kept);
    expect(before.length).toBeGreaterThan(0);
    const b1Id = f.dp.services.listServices()[0].backends.find((b) => b.addr === B1)!.id;
    expect(before.every((r) => r.entry.backendId === b1Id || r.entry.backendId === 0)).toBe(true);

    // B2 goes; the established flow to B1 carries on in the same entry, new flows all meet B1.
    f.tick(1);
    const removed = await f.apply({ kind: "services", upsert: [service(VIP, B1)] });
    expect(removed.ok).toBe(true);
    expect(f.forward(ack(CLIENT, VIP, kept, 80)).map((p) => [p.dst, p.dport])).toEqual([[B1, 8080]]);
    const after = entryOf(kept);
    expect(after.map((r) => hex(r.key))).toEqual(before.map((r) => hex(r.key)));
    expect(after.map((r) => [r.entry.created, r.entry.backendId])).toEqual(before.map((r) => [r.entry.created, r.entry.backendId]));
    // Each of its entries (the VIP's and the backend's) counted the packet: the same entries carried it.
    expect(after.map((r) => r.entry.txPackets)).toEqual(before.map((r) => r.entry.txPackets + 1n));
    const fresh = Array.from({ length: 24 }, (_, i) => syn(CLIENT, VIP, 32000 + i, 80));
    expect(new Set(f.forward(...fresh).map((p) => p.dst))).toEqual(new Set([B1]));
  });

  test("a service deleted while a flow waits in the device: the next batch no longer translates", async () => {
    const f = await liveForwarder();
    await f.apply({ kind: "services", upsert: [service(VIP, B1)] });
    expect(f.forward(syn(CLIENT, VIP, 33000, 80)).map((p) => p.dst)).toEqual([B1]);
    const result = await f.apply({ kind: "services", delete: [{ vip: VIP, port: 80, proto: "tcp" }] }, syn(CLIENT, VIP, 33001, 80));
    expect(result).toMatchObject({ ok: true, summary: "services: 0 upserted, 1 deleted" });
    expect(f.tun.drainWritten().map((w) => decodePacket(w.packet, "ip").dst)).toEqual([VIP]);
    expect(f.dp.services.listServices()).toEqual([]);
  });

  test("results name the batch they landed before, one reply per command, in order", async () => {
    const f = await liveForwarder();
    f.forward(syn(CLIENT, VIP, 1, 80));
    f.forward(syn(CLIENT, VIP, 2, 80));
    const replies = await Promise.all([
      f.apply({ kind: "services", upsert: [service(VIP, B1)] }),
      f.apply({ kind: "conntrack-gc" }),
    ]);
    // Both were waiting when the third batch began: both landed after batch 2.
    expect(replies.map((r) => [r.ok, r.ok && r.batch])).toEqual([[true, 2], [true, 2]]);
    expect(f.inbox.handled).toBe(2);
  });
});

describe("a running forwarder takes policy changes", () => {
  test("a policy change flips the verdict for new flows; the established flow passes on its entry", async () => {
    const f = await liveForwarder();
    const engine = new PolicyEngine();
    const web = ep(1, { app: "web" }, { ipv4: CLIENT });
    const db = ep(2, { app: "db" }, { ipv4: "10.0.2.2" });
    const allow = (port: string) => cnp("web", { endpointSelector: { matchLabels: { app: "web" } }, egress: [{ toEndpoints: [{ matchLabels: { app: "db" } }], toPorts: [{ ports: [{ port, protocol: "TCP" }] }] }] });
    for (const change of [engine.upsertEndpoint(web), engine.upsertEndpoint(db), engine.importPolicies([allow("5432")])]) {
      expect(await f.apply({ kind: "policy", change })).toMatchObject({ ok: true, kind: "policy" });
    }
    expect(f.forward(syn(CLIENT, "10.0.2.2", 40000, 5432)).map((p) => p.dport)).toEqual([5432]);
    expect(f.forward(syn(CLIENT, "10.0.2.2", 40001, 22))).toEqual([]);

    // The flip: 22 allowed, 5432 no longer.
    const flipped = await f.apply({ kind: "policy", change: engine.importPolicies([allow("22")]) });
    expect(flipped.ok).toBe(true);
    const out = f.forward(ack(CLIENT, "10.0.2.2", 40000, 5432), syn(CLIENT, "10.0.2.2", 40002, 5432), syn(CLIENT, "10.0.2.2", 40003, 22));
    // The established 5432 flow passes on its conntrack entry; a new 5432 flow is denied, a new 22 flow allowed.
    expect(out.map((p) => [p.sport, p.dport])).toEqual([[40000, 5432], [40003, 22]]);
    expect(f.dp.counters().drops.map((d) => [d.reason, d.packets])).toEqual([["DROP_POLICY", 2]]);
  });
});

describe("a refused change changes nothing", () => {
  async function withState() {
    const f = await liveForwarder({ nat: { ipv4: { address: NODE, clusterCidrs: ["10.0.0.0/16"] }, entries: 64, seed: 7 } });
    const engine = new PolicyEngine();
    await f.apply({ kind: "policy", change: engine.upsertEndpoint(ep(1, { app: "web" }, { ipv4: CLIENT })) });
    await f.apply({ kind: "services", upsert: [service(VIP, B1, B2)] });
    f.forward(syn(CLIENT, VIP, 50000, 80), syn(CLIENT, OUTSIDE, 50001, 443));
    expect(f.dp.nat.list().length).toBe(2);
    return { f, engine };
  }

  const refused: Array<[string, ForwarderCommand, string, RegExp]> = [
    ["a service over the table's capacity", { kind: "services", upsert: [{ vip: VIP2, port: 80, proto: "tcp", backends: Array.from({ length: 7 }, (_, i) => ({ addr: `10.0.3.${i + 1}`, port: 80 })) }] },
      "INVALID_INPUT", /^services\.upsert\[0\]: service tcp:10\.96\.0\.20:80: the backends table would need 9 entries; it has 8/],
    ["a valid service followed by a bad one: the first is not applied either", { kind: "services", upsert: [service(VIP2, B1), { ...service("10.96.0.30", B2), port: 70000 }] },
      "INVALID_INPUT", /^services\.upsert\[1\]: service\.port: expected a port 1\.\.65535, got 70000/],
    ["the same frontend twice", { kind: "services", upsert: [service(VIP2, B1)], delete: [{ vip: VIP2, port: 80, proto: "tcp" }] },
      "INVALID_INPUT", /^services\.upsert\[0\]: 10\.96\.0\.20 port 80\/tcp is also services\.delete\[0\]/],
    ["a NAT change that resizes the tables", { kind: "nat", nat: { ipv4: { address: NODE }, entries: 128 } },
      "INVALID_INPUT", /^nat\.entries: 128 differs from the running tables' 64/],
    ["a NAT change of the address under live mappings", { kind: "nat", nat: { ipv4: { address: "192.0.2.99" }, entries: 64 } },
      "INVALID_INPUT", /^nat\.ipv4\.address: 1 mappings use 192\.0\.2\.1/],
    ["an unknown command", { kind: "reboot" } as unknown as ForwarderCommand, "INVALID_INPUT", /^command\.kind: expected one of services, nat, policy/],
    ["an unknown key", { kind: "conntrack-flush", force: true } as unknown as ForwarderCommand, "INVALID_INPUT", /^conntrack-flush\.force: unknown key/],
  ];

  test.each(refused)("%s", async (_, command, code, message) => {
    const { f } = await withState();
    const tables = f.dumpAll();
    const services = f.dp.services.listServices();
    const result = await f.apply(command);
    expect(result).toMatchObject({ ok: false, code });
    expect(!result.ok && result.message).toMatch(message);
    expect(f.dumpAll()).toEqual(tables);
    expect(f.dp.services.listServices()).toEqual(services);
  });

  test("an invalid policy entry in a change that also adds an endpoint: neither lands", async () => {
    const { f, engine } = await withState();
    const change = engine.upsertEndpoint(ep(2, { app: "db" }, { ipv4: "10.0.2.2" }));
    change.policy.changes.set(2, { add: [{ identity: 2, port: 22, proto: 1, direction: "ingress", deny: false } as never], remove: [] });
    const tables = f.dumpAll();
    const result = await f.apply({ kind: "policy", change });
    expect(result).toMatchObject({ ok: false, code: "INVALID_INPUT" });
    expect(!result.ok && result.message).toMatch(/^policy\.change: policy diff for endpoint 2: add\[0\]/);
    expect(f.dumpAll()).toEqual(tables);
  });

  test("after a refusal the next valid change still applies", async () => {
    const { f } = await withState();
    expect((await f.apply({ kind: "services", upsert: [{ ...service(VIP2, B1), port: 0 }] })).ok).toBe(false);
    expect(await f.apply({ kind: "services", upsert: [service(VIP2, B2)] })).toMatchObject({ ok: true });
    expect(f.forward(syn(CLIENT, VIP2, 50002, 80)).map((p) => p.dst)).toEqual([B2]);
  });
});

describe("NAT and conntrack commands", () => {
  test("a new port range: the established mapping keeps its port, a new flow gets one from the new range", async () => {
    const f = await liveForwarder({ nat: { ipv4: { address: NODE, clusterCidrs: ["10.0.1.0/24"] }, entries: 64, ports: { min: 20000, max: 20010 }, seed: 3 } });
    const [first] = f.forward(syn(CLIENT, OUTSIDE, 45000, 443));
    expect(first.src).toBe(NODE);
    expect(first.sport).toBeGreaterThanOrEqual(20000);
    expect(first.sport).toBeLessThanOrEqual(20010);
    const result = await f.apply({ kind: "nat", nat: { ipv4: { address: NODE, clusterCidrs: ["10.0.1.0/24"] }, entries: 64, ports: { min: 40000, max: 40010 } } });
    expect(result).toMatchObject({ ok: true, summary: `NAT reconfigured: IPv4 as ${NODE}, ports 40000-40010` });
    const [again, fresh] = f.forward(ack(CLIENT, OUTSIDE, 45000, 443), syn(CLIENT, OUTSIDE, 45001, 443));
    expect([again.src, again.sport]).toEqual([NODE, first.sport]);
    expect(fresh.src).toBe(NODE);
    expect(fresh.sport).toBeGreaterThanOrEqual(40000);
    expect(fresh.sport).toBeLessThanOrEqual(40010);
  });

  test("NAT cannot be switched on in a datapath started without it", async () => {
    const f = await liveForwarder();
    expect(await f.apply({ kind: "nat", nat: { ipv4: { address: NODE } } })).toMatchObject({ ok: false, code: "NOT_SUPPORTED", message: expect.stringMatching(/^nat: NAT is off/) });
  });

  test("flush empties conntrack: the next packet of an old flow is new again; GC removes what expired", async () => {
    const f = await liveForwarder();
    f.forward(syn(CLIENT, "10.0.2.2", 46000, 80), syn(CLIENT, "10.0.2.2", 46001, 80));
    expect(f.dp.tableInfo("tcp4").count).toBe(2);
    expect(await f.apply({ kind: "conntrack-flush" })).toMatchObject({ ok: true, summary: "conntrack flushed: 2 entries removed" });
    expect(f.dp.tableInfo("tcp4").count).toBe(0);
    f.forward(syn(CLIENT, "10.0.2.2", 46002, 80));
    f.tick(24 * 3600);
    expect(await f.apply({ kind: "conntrack-gc" })).toMatchObject({ ok: true, summary: expect.stringMatching(/^conntrack GC: 1 of \d+ entries expired$/) });
    expect(f.dp.tableInfo("tcp4").count).toBe(0);
  });
});

test("a command that is not plain data is refused before it leaves", async () => {
  const f = await liveForwarder();
  const result = await f.apply({ kind: "services", upsert: [{ ...service(VIP, B1), vip: (() => VIP) as unknown as string }] });
  expect(result).toMatchObject({ ok: false, code: "INVALID_INPUT", message: expect.stringMatching(/must be plain data/) });
  expect(f.dp.services.listServices()).toEqual([]);
});

test("a command still waiting when the forwarder stops is answered NOT_RUNNING, and so is every later one", async () => {
  const dp = await Datapath.create({ conntrack: { tcpEntries: 64, otherEntries: 64 } });
  const { port1, port2 } = new MessageChannel();
  const inbox = new CommandInbox(port2, new CommandApplier(dp, { clock: () => 1000, batches: () => 0 }));
  const client = new CommandClient(port1);
  const waiting = client.apply({ kind: "services", upsert: [service(VIP, B1)] });
  inbox.close(); // the worker's loop ended before another batch: the command was never taken
  expect(await waiting).toMatchObject({ ok: false, kind: "services", code: "NOT_RUNNING" });
  expect(await client.apply({ kind: "conntrack-gc" })).toMatchObject({ ok: false, code: "NOT_RUNNING" });
  expect(dp.services.listServices()).toEqual([]);
});
