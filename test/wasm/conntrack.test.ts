// The named conntrack scenarios through the Wasm core, step by step, with the
// entry each step leaves behind.
import { describe, expect, test } from "vitest";
import { Datapath } from "../../host/index.js";
import { SCENARIOS, type Step } from "../fixtures/scenarios.js";
import { formatEntryFlags } from "../../host/conntrack/records.js";
import { verifyChecksums } from "../../host/packet/checksum.js";

function checkStep(dp: Datapath, step: Step, label: string): void {
  const v = dp.decide(step.packet, { link: step.link, direction: step.direction ?? "auto", now: step.now });
  expect({ verdict: v.verdict, ct: v.ct, dropReason: v.dropReason }, label).toEqual({
    verdict: step.expect.verdict, ct: step.expect.ct, dropReason: step.expect.dropReason,
  });
  if (step.expect.direction) expect(v.direction, label).toBe(step.expect.direction);
  // Conntrack rewrites nothing: what passes leaves byte for byte, checksums intact.
  if (v.verdict === "pass") {
    expect(Buffer.from(v.data).equals(Buffer.from(step.packet)), label).toBe(true);
    if (step.link !== "ethernet" && v.ct !== "none") expect(verifyChecksums(v.data, 0).problems, label).toEqual([]);
  }
  const want = step.expect.entry;
  if (want) {
    expect(v.ctTable, label).toBeDefined();
    const entries = [...dp.conntrack(v.ctTable as "tcp4")];
    expect(entries.length, `${label}: one entry in ${v.ctTable}`).toBe(1);
    const { entry, tuple } = entries[0];
    if (want.expiresIn !== undefined) expect(entry.lifetime - step.now, `${label}: expiresIn`).toBe(want.expiresIn);
    if (want.flags) expect(formatEntryFlags(entry.flags), `${label}: flags`).toBe(want.flags.join(",") || "-");
    if (want.txPackets !== undefined) expect(Number(entry.txPackets), `${label}: txPackets`).toBe(want.txPackets);
    if (want.rxPackets !== undefined) expect(Number(entry.rxPackets), `${label}: rxPackets`).toBe(want.rxPackets);
    if (want.txBytes !== undefined) expect(Number(entry.txBytes), `${label}: txBytes`).toBe(want.txBytes);
    if (want.createdBy !== undefined) expect(tuple.flags, `${label}: createdBy`).toBe(want.createdBy);
  }
}

describe("conntrack scenarios (Wasm)", () => {
  for (const scenario of SCENARIOS) {
    test(scenario.name, async () => {
      const dp = await Datapath.create({ conntrack: { tcpEntries: 1024, otherEntries: 1024, ...scenario.options?.conntrack }, fragments: { entries: 64 } });
      scenario.steps.forEach((step, i) => checkStep(dp, step, `step ${i + 1} (${step.note})`));
      for (const [table, count] of Object.entries(scenario.finalEntries ?? {})) {
        expect([...dp.conntrack(table as "tcp4")].length, `entries in ${table}`).toBe(count);
      }
      // Counters agree with the steps: every packet is counted once, as forwarded or as a named drop.
      const c = dp.counters();
      const forwarded = c.forwarded.egress.packets + c.forwarded.ingress.packets;
      const dropped = c.drops.reduce((s, d) => s + d.packets, 0);
      expect(forwarded).toBe(scenario.steps.filter((s) => s.expect.verdict === "pass").length);
      expect(dropped).toBe(scenario.steps.filter((s) => s.expect.verdict === "drop").length);
    });
  }
});
