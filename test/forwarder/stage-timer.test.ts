// The forwarder's per-stage timing: every batch that read packets is timed, each stage gets its share.
import { describe, expect, test } from "vitest";
import { Datapath } from "../../host/datapath.js";
import { FakeTun } from "../../host/tun/fake-tun.js";
import { Forwarder } from "../../host/forwarder/forwarder.js";
import { STAGES, StageTimer } from "../../host/forwarder/stage-timer.js";
import { packet4 } from "../../host/packet/build.js";

describe("stage timing", () => {
  test("is off by default: no stages in the stats", async () => {
    const dp = await Datapath.create({});
    const fwd = new Forwarder(dp, new FakeTun({ mtu: 1500 }), { batchSize: 8 });
    expect(fwd.stats.stages).toBeUndefined();
  });

  test("times each batch that read packets, and the decide stage sees the Wasm call", async () => {
    const dp = await Datapath.create({ conntrack: { tcpEntries: 1024, otherEntries: 1024 } });
    const tun = new FakeTun({ mtu: 1500 });
    const fwd = new Forwarder(dp, tun, { batchSize: 8, stageTiming: true });
    for (let i = 0; i < 20; i++) tun.inject(packet4({ src: "10.0.1.2", dst: "10.0.2.2" }).udp({ sport: 1000 + i, dport: 53 }));
    expect([fwd.step(), fwd.step(), fwd.step(), fwd.step()]).toEqual([8, 8, 4, 0]);
    const stages = fwd.stats.stages!;
    expect(stages.batches).toBe(3);
    expect(stages.clockNs).toBeGreaterThan(0);
    for (const s of STAGES) expect(stages.ns[s]).toBeGreaterThanOrEqual(0);
    expect(stages.ns.decide).toBeGreaterThan(0);
  });

  test("the default clock is this thread's CPU time: a busy loop advances it", () => {
    let spin = 0;
    const timer = new StageTimer();
    timer.start();
    const until = performance.now() + 20;
    while (performance.now() < until) spin++;
    timer.mark("decide");
    expect(spin).toBeGreaterThan(0);
    // 20 ms of wall time spinning is well over 0.1 ms of CPU even at a tenth of a CPU (a crowded machine).
    expect(timer.times.ns.decide).toBeGreaterThan(1e5);
  });
});
