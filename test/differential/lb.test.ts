// Services through both datapaths: seeded sequences of client flows to VIPs
// (random, legacy and maglev services, TCP and UDP, IPv4 and IPv6), replies
// from the chosen backends, ICMP errors quoting either direction, ICMP echo to
// VIPs, and service changes mid-sequence (backends added, removed, drained,
// all removed, algorithm switched) that renumber slots. Compared after every
// packet (verdict, reason, output bytes, checksums by full recompute), and
// after every change and at the end (conntrack tables, LB tables record by
// record, Maglev rows, counters).
import { afterAll, expect, test } from "vitest";
import { compareTables, createPair, decideBoth, runDifferential, type Pair } from "./harness.js";
import { kernelUnavailable } from "./kernel-available.js";
import { seededRandom } from "../support/seeded-random.js";
import { ServiceManager, type ServiceSpec } from "../../host/lb/manager.js";
import { LB_TABLE_NAMES } from "../../host/lb/tables.js";
import { ethernet, packet4, packet6, quoteForIcmpError } from "../../host/packet/build.js";
import { verifyChecksums } from "../../host/packet/checksum.js";
import type { Direction } from "../../host/wasm/batch.js";
import { LB_TEST_OPTIONS, V4, V6, type Family } from "../lb/fixtures.js";
import { describeIf } from "../support/describe-if.js";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

/** The first difference between the two datapaths' LB tables and Maglev rows, or undefined. */
function compareLbTables(pair: Pair, rows: number[]): string | undefined {
  const w = pair.wasm.lbTables(), k = pair.kernel.lbTables();
  for (const table of LB_TABLE_NAMES) {
    const a = w.dump(table).map(hex).sort(), b = k.dump(table).map(hex).sort();
    if (a.join() !== b.join()) return `${table}: Wasm ${JSON.stringify(a)}, kernel ${JSON.stringify(b)}`;
  }
  for (const row of rows) {
    if (hex(new Uint8Array(w.readMaglevRow(row).buffer)) !== hex(new Uint8Array(k.readMaglevRow(row).buffer))) return `Maglev row ${row} differs`;
  }
  return undefined;
}

interface Flow { svc: number; proto: "tcp" | "udp"; cport: number; client: string }

function scenario(f: Family, seed: number, steps: number) {
  return async (pair: Pair) => {
    const rnd = seededRandom(seed);
    const int = (n: number) => Math.floor(rnd() * n);
    const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
    const manager = new ServiceManager([pair.wasm.lbTables(), pair.kernel.lbTables()], pair.wasm.options.lb);
    const build = (src: string, dst: string) => (f.family === 4 ? packet4({ src, dst, id: int(0x10000) }) : packet6({ src, dst }));
    const services: ServiceSpec[] = [
      { vip: f.vip, port: 80, proto: "tcp", algorithm: "random", backends: [1, 2, 3, 4].map((i) => ({ addr: f.backend(i), port: 8080 })) },
      { vip: f.vip, port: 53, proto: "udp", algorithm: "legacy", backends: [5, 6, 7].map((i) => ({ addr: f.backend(i), port: 5353 })) },
      { vip: f.vip, port: 443, proto: "tcp", algorithm: "maglev", backends: [8, 9, 10, 11, 12].map((i) => ({ addr: f.backend(i), port: 8443 })) },
    ];
    for (const s of services) manager.upsertService(s);
    const flows: Flow[] = Array.from({ length: 40 }, () => {
      const svc = int(services.length);
      return { svc, proto: services[svc].proto, cport: 1024 + int(64), client: f.family === 4 ? `10.0.1.${1 + int(6)}` : `fd00:1::${1 + int(6)}` };
    });
    let now = 10_000;
    let packets = 0, changes = 0, translated = 0, reverse = 0, related = 0;

    const run = (l3: Uint8Array, direction: Direction, note: string) => {
      packets++;
      const r = decideBoth(pair, { kind: "packet", frame: ethernet({}, l3), direction, now, note }, packets);
      if (r.divergence) {
        const svcEntries = (dp: { conntrack(): Iterable<{ tuple: { flags: number }; entry: object }> }) => JSON.stringify([...dp.conntrack()].filter((x) => x.tuple.flags === 4), (_k, v) => (typeof v === "bigint" ? Number(v) : v));
        expect.fail(`${r.divergence}\nservices: ${JSON.stringify(manager.listServices())}\nwasm SERVICE entries: ${svcEntries(pair.wasm)}\nkernel SERVICE entries: ${svcEntries(pair.kernel)}`);
      }
      if (r.wasm.verdict === "pass") expect(verifyChecksums(r.wasm.data, 14).problems, `${note}: ${hex(r.wasm.data)}`).toEqual([]);
      if (packets % 250 === 0) expect(compareTables(pair), `after packet ${packets}`).toBeUndefined();
    };
    /** The backend the flow's SERVICE entry names, as an address, if any. */
    const backendOf = (fl: Flow): { addr: string; port: number } | undefined => {
      const s = services[fl.svc];
      const e = [...pair.wasm.conntrack()].find((r) => r.tuple.flags === 4 && r.tuple.src === fl.client && r.tuple.sport === fl.cport && r.tuple.dport === s.port && r.tuple.proto === (fl.proto === "tcp" ? 6 : 17));
      if (!e) return undefined;
      const info = manager.listServices().flatMap((x) => x.backends).find((b) => b.id === e.entry.backendId);
      return info && { addr: info.addr, port: info.port };
    };
    const l4 = (b: ReturnType<typeof build>, proto: "tcp" | "udp", sport: number, dport: number) => proto === "tcp"
      ? b.tcp({ sport, dport, flags: pick([{ syn: true }, { ack: true }, { psh: true, ack: true }, { fin: true, ack: true }]), payload: new Uint8Array(int(40)).fill(int(256)) })
      : b.udp({ sport, dport, payload: new Uint8Array(int(40)).fill(int(256)) });

    for (let step = 0; step < steps; step++) {
      if (rnd() < 0.1) now += 1 + int(30);
      const r = rnd();
      const fl = pick(flows);
      const s = services[fl.svc];
      if (r < 0.55) {
        run(l4(build(fl.client, s.vip), fl.proto, fl.cport, s.port), pick(["auto", "auto", "egress"] as const), `client -> ${s.algorithm} service`);
        translated++;
      } else if (r < 0.78) {
        const b = backendOf(fl);
        if (!b) continue;
        run(l4(build(b.addr, fl.client), fl.proto, b.port, fl.cport), pick(["auto", "auto", "ingress"] as const), "backend reply");
        reverse++;
      } else if (r < 0.86) {
        const b = backendOf(fl);
        if (!b) continue;
        const toClient = rnd() < 0.7;
        const quotedPkt = toClient ? l4(build(fl.client, b.addr), fl.proto, fl.cport, b.port) : l4(build(b.addr, fl.client), fl.proto, b.port, fl.cport);
        const from = rnd() < 0.5 ? (toClient ? b.addr : fl.client) : f.router;
        const to = toClient ? fl.client : b.addr;
        const e = build(from, to);
        const quoted = quoteForIcmpError(quotedPkt);
        const err = "icmpError" in e ? e.icmpError({ type: pick([3, 11]), code: int(4), quoted }) : e.icmp6Error({ type: pick([1, 2, 3]), code: 0, mtu: 1280, quoted });
        run(err, "auto", `icmp error ${toClient ? "to the client" : "to the backend"} from ${from}`);
        related++;
      } else if (r < 0.89) {
        const b = build(fl.client, s.vip);
        run("icmpEcho" in b ? b.icmpEcho({ request: true, id: fl.cport, seq: int(100) }) : b.icmp6Echo({ request: true, id: fl.cport, seq: int(100) }), "auto", "ping VIP");
      } else if (r < 0.95) {
        // Backend churn: slots renumber; sometimes every backend goes, or the algorithm changes.
        const svc = services[int(services.length)];
        const pool = Array.from({ length: 8 }, (_, i) => i + 1 + services.indexOf(svc) * 8);
        const c = rnd();
        if (c < 0.1) svc.backends = [];
        else svc.backends = pool.filter(() => rnd() < 0.6).map((i) => ({ addr: f.backend(i), port: svc.backends[0]?.port ?? 9000, weight: svc.algorithm === "maglev" ? int(2) : int(3) }));
        if (c > 0.95) svc.algorithm = pick(["random", "legacy", "maglev"] as const);
        if (svc.algorithm === "maglev") svc.backends.forEach((b) => { b.weight = Math.min(b.weight ?? 1, 1); });
        manager.upsertService(svc);
        changes++;
        const rows = manager.listServices().flatMap((x) => (x.maglevRow === undefined ? [] : [x.maglevRow]));
        expect(compareLbTables(pair, rows), `after change ${changes}`).toBeUndefined();
      } else if (rnd() < 0.5) {
        const g = runDifferential(pair, [{ kind: "gc", now }]);
        expect(g.divergence).toBeUndefined();
      }
    }
    const end = runDifferential(pair, []);
    expect(end.divergence).toBeUndefined();
    return { packets, changes, translated, reverse, related };
  };
}

describeIf("differential: services (Wasm vs kernel)", kernelUnavailable(), () => {
  const pairs: Pair[] = [];
  afterAll(() => pairs.forEach((p) => p.close()));
  for (const f of [V4, V6]) {
    test(`IPv${f.family}: flows, replies, ICMP errors and backend churn`, { timeout: 120_000 }, async () => {
      const pair = await createPair({ ...LB_TEST_OPTIONS, hashSeed: 7 });
      pairs.push(pair);
      const stats = await scenario(f, 0x5e7 + f.family, 1500)(pair);
      expect(stats.changes).toBeGreaterThan(20);
      expect(stats.reverse).toBeGreaterThan(100);
      expect(stats.related).toBeGreaterThan(20);
    });
  }
});
