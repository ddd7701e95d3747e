// The split endpoint program on pinned maps, with the generic bpf_lxc as
// built (no compile): an endpoint's per-endpoint programs with no stage
// installed drop with the named reason DROP_MISSED_TAIL_CALL (never a crash,
// never a pass); installing the node-wide stages makes the same loaded
// programs decide, and installing them again replaces both slots with new
// programs while the endpoint's programs stay; stale template arrays are
// unpinned, the kept ones stay.
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, expect, test } from "vitest";
import { resolveOptions } from "../../host/config.js";
import { loadConfiguredObject, setKernelClock } from "../../host/kernel/load.js";
import { LXC_CALLS_MAP, LXC_ENDPOINT_PROGRAMS, LXC_STAGES, lxcCallsPin, lxcStageIds, removeStaleLxcCalls } from "../../host/kernel/lxc-stages.js";
import { readKernelCounters } from "../../host/kernel/counters.js";
import { decodeSkbCtx, encodeSkbCtx } from "../../host/bpf/skb-ctx.js";
import type { BpfObject } from "../../host/bpf/object.js";
import { DropReason } from "../../host/generated/layout.js";
import { bpfObjectPath } from "../../host/tools/build-bpf.js";
import { ethernet, packet4 } from "../../host/packet/build.js";
import { kernelUnavailable } from "../differential/kernel-available.js";
import { describeIf } from "../support/describe-if.js";

const PIN_DIR = `/sys/fs/bpf/membrane-test-lxc-stages${process.pid}`;
const KEY_A = "a".repeat(64);
const KEY_B = "b".repeat(64);

describeIf("bpf_lxc split: per-endpoint programs and node-wide stages", kernelUnavailable(), () => {
  const open: BpfObject[] = [];
  afterAll(() => {
    open.forEach((o) => o.close());
    rmSync(PIN_DIR, { recursive: true, force: true });
  });

  const options = resolveOptions({ conntrack: { tcpEntries: 4096, otherEntries: 4096 } });
  const elf = () => readFileSync(bpfObjectPath("bpf_lxc"));
  const syn = ethernet({ etherType: 0x0800 }, packet4({ src: "10.0.1.2", dst: "10.0.9.9" }).tcp({ sport: 40000, dport: 80, flags: { syn: true } }));
  const run = (o: BpfObject) => {
    const r = o.program("from_container").testRun({ data: syn, ctx: encodeSkbCtx({ cb: [0] }) });
    const cb0 = decodeSkbCtx(r.ctx!).cb[0]!;
    return { retval: r.retval, reason: (cb0 >>> 8) & 0xff };
  };
  const installStages = (key: string) => {
    const stages = loadConfiguredObject(elf(), options, { name: "stages", pinDir: PIN_DIR, reusePinned: true, programs: LXC_STAGES.map((s) => s.program), pinPaths: { [LXC_CALLS_MAP]: lxcCallsPin(PIN_DIR, key) } });
    try {
      return lxcStageIds(stages);
    } finally {
      stages.close(); // the pinned array keeps the stages
    }
  };

  test("no stage installed: DROP_MISSED_TAIL_CALL, counted; stages installed: decided; installed again: replaced in place", () => {
    // The node's maps, created and pinned by a maps-only load (as the agent's holder does).
    open.push(loadConfiguredObject(elf(), options, { name: "holder", pinDir: PIN_DIR, mapsOnly: true }));
    const endpoint = loadConfiguredObject(elf(), options, { name: "ep", pinDir: PIN_DIR, reusePinned: true, programs: LXC_ENDPOINT_PROGRAMS, pinPaths: { [LXC_CALLS_MAP]: lxcCallsPin(PIN_DIR, KEY_A) } });
    open.push(endpoint);
    setKernelClock(endpoint, 1000);
    expect(LXC_STAGES.map((s) => endpoint.program(s.program).loaded)).toEqual([false, false]);
    expect(lxcStageIds(endpoint)).toEqual([0, 0]);

    expect(run(endpoint)).toEqual({ retval: 2, reason: DropReason.DROP_MISSED_TAIL_CALL });
    const missed = readKernelCounters(endpoint).drops.find((d) => d.reason === "DROP_MISSED_TAIL_CALL");
    expect(missed?.packets).toBe(1);

    const first = installStages(KEY_A);
    expect(first.every((id) => id > 0)).toBe(true);
    expect(lxcStageIds(endpoint)).toEqual(first);
    // The same loaded endpoint program now reaches the datapath: a new flow with no policy on it passes and is tracked.
    expect(run(endpoint)).toEqual({ retval: 0, reason: 0 });
    expect(endpoint.map("ct_tcp4").dump().length).toBe(1);

    const second = installStages(KEY_A);
    expect(second.every((id, i) => id > 0 && id !== first[i])).toBe(true);
    expect(lxcStageIds(endpoint)).toEqual(second);
    expect(run(endpoint)).toEqual({ retval: 0, reason: 0 });
  });

  test("a whole bpf_lxc (no pins) fills its own array: self-contained", () => {
    const whole = loadConfiguredObject(elf(), options, { name: "whole" });
    open.push(whole);
    setKernelClock(whole, 1000);
    expect(lxcStageIds(whole).every((id) => id > 0)).toBe(true);
    expect(run(whole)).toEqual({ retval: 0, reason: 0 });
  });

  test("stale template arrays are unpinned, kept ones stay", () => {
    installStages(KEY_B);
    expect(existsSync(lxcCallsPin(PIN_DIR, KEY_A))).toBe(true);
    expect(existsSync(lxcCallsPin(PIN_DIR, KEY_B))).toBe(true);
    expect(removeStaleLxcCalls(PIN_DIR, [KEY_A])).toEqual([`lxc_calls_${KEY_B.slice(0, 16)}`]);
    expect(existsSync(lxcCallsPin(PIN_DIR, KEY_A))).toBe(true);
    expect(existsSync(lxcCallsPin(PIN_DIR, KEY_B))).toBe(false);
    // The generic array of whole loads and every other pin are not template arrays.
    expect(existsSync(join(PIN_DIR, "ct_tcp4"))).toBe(true);
  });
});
