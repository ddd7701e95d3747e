// Property 4: tiny tables (4 TCP and 4 other entries per family, 4 fragment
// datagrams) under both whenFull policies. The live entry count never exceeds
// the capacity; with "drop", a new flow into a table full of live entries is
// dropped with DROP_CT_CREATE_FAILED; with "evict-lru" a new flow is never
// dropped. A reference model predicts every verdict and the table contents
// after every packet; which entry a full table gives up is the table's choice
// (CLOCK, approximating LRU), but it must be exactly one entry, and under the
// drop policy an expired one.
import { beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { Datapath } from "../../host/datapath.js";
import type { Direction } from "../../host/wasm/batch.js";
import { buildStep, checkTables, checkVerdict, compareWithModel, fcParams, flowArb, hex, runs, seqStepArb } from "./fuzz-inputs.js";
import { CT_NAMES, CtModel, snapshot, startsOver, type CtName, type ModelConfig, type ModelPkt, type Snapshot } from "./conntrack-model.js";

const CAPACITY = 4;
const base: Omit<ModelConfig, "whenFull"> = {
  tcpEntries: CAPACITY,
  otherEntries: CAPACITY,
  timeouts: { tcp: 100, syn: 30, close: 5, other: 30 },
  fragEntries: 4,
  fragTimeout: 20,
};

const dps = new Map<ModelConfig["whenFull"], Datapath>();

beforeAll(async () => {
  for (const whenFull of ["evict-lru", "drop"] as const) {
    dps.set(whenFull, await Datapath.create({
      conntrack: { tcpEntries: base.tcpEntries, otherEntries: base.otherEntries, timeouts: base.timeouts, whenFull },
      fragments: { entries: base.fragEntries, timeout: base.fragTimeout },
    }));
  }
});

const flag = (d: "egress" | "ingress") => (d === "ingress" ? 1 : 0);
const key = (src: Uint8Array, dst: Uint8Array, sport: number, dport: number, proto: number, f: number) =>
  `${hex(src)}|${hex(dst)}|${sport}|${dport}|${proto}|${f}`;

/** From the state before a packet: is it a new flow into a table whose every entry is live and which is full? */
function newFlowIntoFullTable(pre: Snapshot, p: ModelPkt, dir: Direction, now: number): boolean {
  if (p.quoted || p.frag === "later") return false;
  const table = `${p.proto === 6 ? "tcp" : "any"}${p.family}` as CtName;
  const m = pre.ct[table];
  const live = (k: string) => (m.get(k)?.lifetime ?? -1) >= now;
  const rev = (f: number) => key(p.dst, p.src, p.dport, p.sport, p.proto, f);
  const fwd = (f: number) => key(p.src, p.dst, p.sport, p.dport, p.proto, f);
  // A live entry the packet continues (not a SYN on a closing one, which starts over) takes it.
  const continues = (k: string) => live(k) && !startsOver(m.get(k)!, p);
  let d: "egress" | "ingress";
  if (dir === "auto") {
    if (live(rev(0))) {
      if (continues(rev(0))) return false;
    } else if (continues(rev(1))) return false;
    d = "egress";
  } else {
    d = dir;
    if (continues(rev(flag(d) ^ 1))) return false;
  }
  if (m.has(fwd(flag(d)))) return false; // an entry under the flow's own key is replaced, not added
  return m.size >= CAPACITY && [...m.values()].every((v) => v.lifetime >= now);
}

const PORTS = { ports: [1000, 1001, 1002, 1003, 1004], ids: [80, 53, 443] };
/** Mostly flows of one table, so it fills up; sometimes a mix. */
const flowsArb = fc.record({ v6: fc.boolean(), proto: fc.constantFrom("tcp" as const, "udp" as const, "echo" as const), mixed: fc.nat({ max: 4 }) })
  .chain(({ v6, proto, mixed }) => fc.array(mixed === 0 ? flowArb(PORTS) : flowArb({ ...PORTS, v6, proto }), { minLength: 1, maxLength: 16, size: "max" }));
const stepArb = seqStepArb({
  kinds: ["pkt", "pkt", "pkt", "pkt", "pkt", "pkt", "error", "frag", "frag"],
  directions: ["egress", "egress", "ingress", "auto"],
  maxDt: 45,
  gcOneIn: 40,
});

describe("Wasm core with full conntrack tables", () => {
  for (const whenFull of ["evict-lru", "drop"] as const) {
    it(`never exceeds capacity; whenFull "${whenFull}" (${runs(1 / 40)} sequences)`, () => {
      const dp = dps.get(whenFull)!;
      const cfg: ModelConfig = { ...base, whenFull };
      fc.assert(
        fc.property(
          flowsArb,
          fc.array(stepArb, { minLength: 1, maxLength: 50, size: "max" }),
          (flows, steps) => {
            dp.flush();
            const model = new CtModel(cfg);
            let now = 1000;
            const trace: string[] = [];
            for (const s of steps) {
              now += s.dt;
              if (s.gc) { dp.gc(now); model.gc(now); trace.push(`gc(${now})`); }
              const b = buildStep(flows, { ...s, flush: false });
              const p = b.model!;
              trace.push(`${now} ${s.kind} ${s.direction} ${b.link} ${hex(b.bytes)}`);
              const where = () => `after\n  ${trace.join("\n  ")}`;
              const pre = snapshot(dp);
              const v = dp.decide(b.bytes, { link: b.link, direction: s.direction, now });
              checkVerdict(v, b.bytes, b.link);
              checkTables(dp);
              const post = snapshot(dp);
              for (const t of CT_NAMES) {
                const entries = [...post.ct[t].values()];
                expect(entries.length, `${t} entries ${where()}`).toBeLessThanOrEqual(CAPACITY);
                expect(entries.filter((e) => e.lifetime >= now).length, `${t} live entries ${where()}`).toBeLessThanOrEqual(CAPACITY);
                expect(dp.tableInfo(t).count, `${t} count ${where()}`).toBe(entries.length);
              }
              if (whenFull === "drop" && newFlowIntoFullTable(pre, p, s.direction, now)) {
                expect(v.dropReason, `new flow into a full table ${where()}`).toBe("DROP_CT_CREATE_FAILED");
              }
              if (whenFull === "evict-lru") expect(v.dropReason, `evict-lru dropped ${where()}`).not.toBe("DROP_CT_CREATE_FAILED");
              const want = model.decide(p, s.direction, now);
              expect(compareWithModel(model, want, v, post), `model disagrees ${where()}`).toEqual([]);
            }
          },
        ),
        fcParams(runs(1 / 40)),
      );
    });
  }
});
