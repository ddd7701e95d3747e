// Seeded random flow mixes through both datapaths: 100k packets by default,
// DIFF_PACKETS=10000000 for a long run. Prints the first divergence.
import { afterAll, expect, test } from "vitest";
import { flowMix } from "./flow-mix.js";
import { createPair, runDifferential, type Pair } from "./harness.js";
import { kernelUnavailable } from "./kernel-available.js";
import { describeIf } from "../support/describe-if.js";

const TOTAL = Number(process.env.DIFF_PACKETS ?? 100_000);
const CHUNK = 20_000;
const SEED = Number(process.env.DIFF_SEED ?? 20261123);

describeIf("differential: seeded random flow mixes (Wasm vs kernel)", kernelUnavailable(), () => {
  let pair: Pair | undefined;
  afterAll(() => pair?.close());

  // About 60 µs per packet on a loaded 2-core machine: give long runs the time they need.
  test(`${TOTAL} packets, seed ${SEED}`, { timeout: Math.max(120_000, TOTAL / 10) }, async () => {
    // Tables large enough that nothing is evicted: eviction order is excluded from the comparison.
    pair = await createPair({ conntrack: { tcpEntries: 65536, otherEntries: 65536 }, fragments: { entries: 4096 } });
    let done = 0;
    let now = 10_000;
    let refused = 0;
    for (let chunk = 0; done < TOTAL; chunk++) {
      const events = flowMix(SEED + chunk, Math.min(CHUNK, TOTAL - done), { startNow: now });
      now = events.at(-1)!.now;
      const result = runDifferential(pair, events, 2_000);
      expect(result.divergence, `seed ${SEED + chunk}`).toBeUndefined();
      done += result.packets + result.refused + events.filter((e) => e.kind === "gc").length;
      refused += result.refused;
      if (TOTAL > 1_000_000 && chunk % 50 === 0) console.log(`differential: ${done} events compared`);
    }
    console.log(`differential: ${done} events, ${refused} frames refused by the kernel's test run (sent to neither side)`);
    expect(refused).toBeLessThan(done / 20);
  });
});
