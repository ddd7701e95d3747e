// Property 2: valid packets of every kind the core parses (IPv4/IPv6 x TCP/UDP/
// ICMP echo, ICMP errors quoting a flow, IPv6 extension headers, IPv4 options,
// fragments, ARP and neighbour discovery; bare, in Ethernet, behind a VLAN tag).
// Unmutated, they get the documented verdict; mutated (flipped bytes, truncated,
// extended, length/header-length/protocol fields overwritten) they still never
// trap and always get a well-formed verdict.
import { beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { Datapath } from "../../host/datapath.js";
import type { Direction } from "../../host/wasm/batch.js";
import type { PacketVerdict } from "../../host/verdict.js";
import {
  DIRECTIONS, TailProbe, checkVerdict, expectOutcome, fcParams, hex, mutate, mutationArb, runs, validSample,
  type Sample, type Step,
  decideOrExplain,
} from "./fuzz-inputs.js";

let dp: Datapath;
let probe: TailProbe;

beforeAll(async () => {
  dp = await Datapath.create({ conntrack: { tcpEntries: 4096, otherEntries: 4096 }, fragments: { entries: 1024 } });
  probe = new TailProbe(dp);
});

function decide(s: Step, now: number): PacketVerdict {
  return decideOrExplain(dp, s.bytes, { link: s.link, direction: s.direction, now }, () => "");
}

const NOW = 1000;

describe("Wasm core on valid packets", () => {
  it(`decides unmutated packets as documented (${runs(0.1)} runs)`, () => {
    fc.assert(
      fc.property(validSample, fc.nat(), (s: Sample, pick) => {
        dp.flush();
        const fresh = decide({ bytes: s.bytes, link: s.link, direction: "egress" }, NOW);
        checkVerdict(fresh, s.bytes, s.link);
        expectOutcome(fresh, s.fresh, `${s.name}, fresh flow, egress`, s.bytes);
        if (!s.setup || !s.afterSetup || !s.setupDirections) return;
        dp.flush();
        s.setup.forEach((f, i) => {
          const v = decide({ bytes: f, link: s.link, direction: "egress" }, NOW);
          checkVerdict(v, f, s.link);
          expect(v.verdict, `${s.name}: setup packet ${i} ${hex(f)} ${v.dropReason}`).toBe("pass");
        });
        const direction = s.setupDirections[pick % s.setupDirections.length]!;
        const after = decide({ bytes: s.bytes, link: s.link, direction }, NOW);
        checkVerdict(after, s.bytes, s.link);
        expectOutcome(after, s.afterSetup, `${s.name}, after its flow/first fragment (setup ${s.setup.map(hex).join(" ")}), ${direction}`, s.bytes);
      }),
      fcParams(runs(0.1)),
    );
  });

  it(`never traps on mutated packets (${runs(0.4)} runs)`, () => {
    fc.assert(
      fc.property(
        validSample,
        fc.array(mutationArb, { minLength: 1, maxLength: 4 }),
        fc.constantFrom<Direction>(...DIRECTIONS),
        fc.boolean(),
        fc.integer({ min: 0, max: 0xffffffff }),
        (s, muts, direction, withSetup, now) => {
          const bytes = mutate(s.bytes, s.fields, muts);
          const steps: Step[] = [];
          if (withSetup && s.setup) for (const f of s.setup) steps.push({ bytes: f, link: s.link, direction: "egress" });
          steps.push({ bytes, link: s.link, direction });
          dp.flush();
          let last!: PacketVerdict;
          for (const st of steps) {
            last = decide(st, now);
            checkVerdict(last, st.bytes, st.link);
          }
          probe.check(steps, now, last);
        },
      ),
      fcParams(runs(0.4)),
    );
  });
});
