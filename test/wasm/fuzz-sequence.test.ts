// Property 3: random sequences of packets from a small pool of flows (so that
// replies, established packets, fragments and related ICMP errors happen) with
// an increasing clock, occasional gc and flush, and some mutated packets mixed
// in. The core never traps; after every step the conntrack tables hold only
// their own protocols, and the counters account for every packet decided. The
// unmutated packets are also checked against a reference model of conntrack
// (assembly/conntrack.ts's documented semantics): verdict and table contents.
import { beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { Datapath } from "../../host/datapath.js";
import {
  TailProbe, buildStep, checkSequenceStep, compareWithModel, fcParams, flowArb, hex, runs,
  seqStepArb,
  decideOrExplain,
} from "./fuzz-inputs.js";
import { CtModel, snapshot, type ModelConfig } from "./conntrack-model.js";

const CONFIG: ModelConfig = {
  tcpEntries: 4096,
  otherEntries: 4096,
  timeouts: { tcp: 3600, syn: 60, close: 10, other: 60 },
  whenFull: "evict-lru",
  fragEntries: 1024,
  fragTimeout: 30,
};

let dp: Datapath;
let probe: TailProbe;
// Counters are cumulative over the datapath's life: every packet this file decides is counted here.
let decided = 0;
let decidedBytes = 0;

beforeAll(async () => {
  dp = await Datapath.create({
    conntrack: { tcpEntries: CONFIG.tcpEntries, otherEntries: CONFIG.otherEntries, timeouts: CONFIG.timeouts, whenFull: CONFIG.whenFull },
    fragments: { entries: CONFIG.fragEntries, timeout: CONFIG.fragTimeout },
  });
  probe = new TailProbe(dp);
});


describe("Wasm core on packet sequences", () => {
  it(`never traps, keeps tables and counters consistent, and agrees with the model (${runs(1 / 20)} sequences)`, () => {
    fc.assert(
      fc.property(
        fc.array(flowArb(), { minLength: 1, maxLength: 5 }),
        fc.array(seqStepArb(), { minLength: 1, maxLength: 50, size: "max" }),
        fc.integer({ min: 1, max: 1_000_000 }),
        (flows, steps, start) => {
          dp.flush();
          const model = new CtModel(CONFIG);
          let now = start;
          const trace: string[] = [];
          for (const s of steps) {
            now += s.dt;
            if (s.flush) { dp.flush(); model.flush(); trace.push("flush"); }
            if (s.gc) { dp.gc(now); model.gc(now); trace.push(`gc(${now})`); }
            const b = buildStep(flows, s);
            trace.push(`${now} ${s.kind} ${s.direction} ${b.link} ${hex(b.bytes)}`);
            const where = () => `after\n  ${trace.join("\n  ")}`;
            const v = decideOrExplain(dp, b.bytes, { link: b.link, direction: s.direction, now }, where);
            decided++;
            decidedBytes += b.bytes.length;
            checkSequenceStep(dp, v, b, { packets: decided, bytes: decidedBytes }, where);
            if (b.model) {
              const want = model.decide(b.model, s.direction, now);
              expect(compareWithModel(model, want, v, snapshot(dp)), `model disagrees ${where()}`).toEqual([]);
            } else {
              model.resync(snapshot(dp)); // a mutated packet may have changed anything
            }
          }
        },
      ),
      fcParams(runs(1 / 20)),
    );
  });

  it(`decides sequences without reading past a packet (${runs(1 / 100)} sequences)`, () => {
    fc.assert(
      fc.property(
        fc.array(flowArb(), { minLength: 1, maxLength: 4 }),
        fc.array(seqStepArb(), { minLength: 1, maxLength: 12, size: "max" }),
        (flows, steps) => {
          const built = steps.map((s) => ({ ...buildStep(flows, s), direction: s.direction }));
          probe.check(built, 1000);
        },
      ),
      fcParams(runs(1 / 100)),
    );
  });
});
