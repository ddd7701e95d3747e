// The named conntrack scenarios through both datapaths, compared after every packet.
import { afterAll, expect, test } from "vitest";
import { SCENARIOS } from "../fixtures/scenarios.js";
import { createPair, runDifferential, type DiffEvent, type Pair } from "./harness.js";
import { kernelUnavailable } from "./kernel-available.js";
import { ethernet } from "../../host/packet/build.js";
import { describeIf } from "../support/describe-if.js";

/** Scenarios the comparison excludes, and why. */
const EXCLUDED: Record<string, string> = {
  "full table, evict-lru policy": "which entry a full table gives up is the kernel LRU's own choice",
  "full table, drop policy": "a full kernel hash map cannot reuse an expired entry the way the Wasm table does",
};

/** Both datapaths get the same Ethernet frame: tc programs always see one. */
function asFrame(packet: Uint8Array, link: "ip" | "ethernet" | undefined): Uint8Array | undefined {
  if (link === "ethernet") return packet.length >= 14 ? packet : undefined; // a runt never reaches tc
  const version = packet[0] >> 4;
  return ethernet({ etherType: version === 4 ? 0x0800 : version === 6 ? 0x86dd : 0x0000 }, packet);
}

describeIf("differential: named scenarios (Wasm vs kernel)", kernelUnavailable(), () => {
  const pairs: Pair[] = [];
  afterAll(() => pairs.forEach((p) => p.close()));

  for (const scenario of SCENARIOS) {
    const excluded = EXCLUDED[scenario.name];
    test.skipIf(!!excluded)(`${scenario.name}${excluded ? ` (excluded: ${excluded})` : ""}`, async () => {
      const pair = await createPair({ conntrack: { tcpEntries: 1024, otherEntries: 1024, ...scenario.options?.conntrack }, fragments: { entries: 64 } });
      pairs.push(pair);
      const events: DiffEvent[] = [];
      for (const step of scenario.steps) {
        const frame = asFrame(step.packet, step.link);
        if (frame) events.push({ kind: "packet", frame, direction: step.direction ?? "auto", now: step.now, note: step.note });
      }
      const result = runDifferential(pair, events, 1);
      expect(result.divergence).toBeUndefined();
      expect(result.packets + result.refused).toBe(events.length);
    });
  }
});
