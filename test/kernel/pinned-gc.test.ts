// GC on the pinned maps of a loaded datapath (what the agent runs for the
// kernel path): masqueraded UDP flows made by the real program at clock 100,
// nothing expired at 130, everything (conntrack and the NAT pairs with it)
// at 1000, and the adaptive schedule reacting to both runs.
import { readFileSync, rmSync } from "node:fs";
import { afterAll, expect, test } from "vitest";
import { resolveOptions } from "../../host/config.js";
import { loadConfiguredObject, setKernelClock } from "../../host/kernel/load.js";
import { PinnedGc } from "../../host/kernel/pinned-gc.js";
import { encodeSkbCtx } from "../../host/bpf/skb-ctx.js";
import { DIRECTION_CODE } from "../../host/engine.js";
import { bpfObjectPath } from "../../host/tools/build-bpf.js";
import { ethernet, packet4 } from "../../host/packet/build.js";
import { GC_ADAPTIVE_START_SECONDS } from "../../host/conntrack/gc-schedule.js";
import { kernelUnavailable } from "../differential/kernel-available.js";
import { describeIf } from "../support/describe-if.js";

const PIN_DIR = `/sys/fs/bpf/membrane-test-gc${process.pid}`;

describeIf("GC on pinned maps", kernelUnavailable(), () => {
  afterAll(() => rmSync(PIN_DIR, { recursive: true, force: true }));

  test("expired conntrack entries and their NAT pairs go; live ones stay; the schedule adapts", () => {
    const options = resolveOptions({
      conntrack: { tcpEntries: 4096, otherEntries: 4096 },
      nat: { ipv4: { address: "192.0.2.1", clusterCidrs: ["10.0.0.0/8"] }, ports: { min: 20000, max: 30000 }, entries: 2048 },
    });
    const object = loadConfiguredObject(readFileSync(bpfObjectPath("bpf_test")), options, { name: "gc_test", pinDir: PIN_DIR });
    const gc = new PinnedGc({ pinDir: PIN_DIR });
    try {
      setKernelClock(object, 100);
      const prog = object.program("test_process");
      for (let i = 1; i <= 20; i++) {
        const frame = ethernet({ etherType: 0x0800 }, packet4({ src: `10.0.1.${i}`, dst: "198.51.100.1" }).udp({ sport: 5000 + i, dport: 53, payload: Uint8Array.of(1) }));
        expect(prog.testRun({ data: frame, ctx: encodeSkbCtx({ cb: [DIRECTION_CODE.egress] }) }).retval).toBe(0);
      }
      const any4 = () => object.map("ct_any4").dump().length;
      const nat4 = () => object.map("nat4").dump().length;
      expect(any4()).toBe(20);
      expect(nat4()).toBe(40); // a forward and a reverse entry per flow

      const early = gc.runOnce(130);
      expect(early.tables.find((t) => t.table === "any4")).toEqual({ table: "any4", deleted: 0, scanned: 20 });
      expect(early.natDeleted).toBe(0);
      expect(early.nextSeconds).toBe(GC_ADAPTIVE_START_SECONDS * 1.5); // < 5% deleted: 1.5x longer

      const late = gc.runOnce(1000);
      expect(late.tables.find((t) => t.table === "any4")).toEqual({ table: "any4", deleted: 20, scanned: 20 });
      expect(late.natDeleted).toBe(40);
      expect(late.maxDeleteRatio).toBe(1);
      expect(late.seconds).toBeGreaterThan(0); // the run is timed (datapath_conntrack_gc_duration_seconds)
      expect(late.nextSeconds).toBe(Math.round(GC_ADAPTIVE_START_SECONDS * 1.5 * 0.1)); // all deleted: 10x shorter
      expect(any4()).toBe(0);
      expect(nat4()).toBe(0);
    } finally {
      gc.close();
      object.close();
    }
  });
});
