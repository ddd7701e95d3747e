// Property 1: arbitrary byte strings, as IP packets and as Ethernet frames, in
// every direction. The core must never trap and always yield a verdict: pass or
// drop, a drop with a known DROP_* reason, an untracked pass only for ARP or
// neighbour discovery, and the bytes unchanged (nothing is rewritten yet). The
// decision may not depend on the bytes behind the packet in its buffer.
import { beforeAll, describe, it } from "vitest";
import fc from "fast-check";
import { Datapath } from "../../host/datapath.js";
import type { LinkKind } from "../../host/wasm/batch.js";
import { DIRECTIONS, LINKS, TailProbe, arbitraryFrame, checkVerdict, decideOrExplain, fcParams, runs } from "./fuzz-inputs.js";

let dp: Datapath;
let probe: TailProbe;

beforeAll(async () => {
  dp = await Datapath.create({ conntrack: { tcpEntries: 4096, otherEntries: 4096 }, fragments: { entries: 1024 } });
  probe = new TailProbe(dp);
});

describe("Wasm core on arbitrary bytes", () => {
  for (const link of LINKS) {
    it(`never traps and always decides (${link}, ${runs(0.25)} runs)`, () => {
      fc.assert(
        fc.property(arbitraryFrame(link), fc.constantFrom(...DIRECTIONS), fc.integer({ min: 0, max: 0xffffffff }), (bytes, direction, now) => {
          dp.flush();
          const v = decideOrExplain(dp, bytes, { link: link as LinkKind, direction, now }, () => "");
          checkVerdict(v, bytes, link);
          probe.check([{ bytes, link, direction }], now, v);
        }),
        fcParams(runs(0.25)),
      );
    });
  }
});
