// The agent's state file reaches the forwarder's datapath: the policy engine's endpoints, ipcache and
// entries (written by `membrane endpoint add` / `policy import`) and the NAT configuration, both in place
// before the conntrack snapshot is restored. The forwarder runs on the in-memory TUN device, set up exactly
// as the worker sets itself up (loadAgentConfig -> WorkerStart fields -> prepareDatapath).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { run } from "../../host/cli/main.js";
import { loadAgentConfig } from "../../host/agent/agent.js";
import { prepareDatapath } from "../../host/forwarder/setup.js";
import { Forwarder } from "../../host/forwarder/forwarder.js";
import { FakeTun } from "../../host/tun/fake-tun.js";
import { packet4 } from "../../host/packet/build.js";
import { takeSnapshot } from "../../host/conntrack/snapshot.js";
import { decodePacket } from "../../host/packet/decode.js";
import { WEB_EGRESS_POLICY } from "../fixtures/web-policy.js";

const dir = mkdtempSync(join(tmpdir(), "membrane-agent-state-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const WEB = "10.0.1.10", DB = "10.0.1.20", OUTSIDE = "93.184.216.34", NODE = "192.0.2.1";
const state = join(dir, "state.json");
const snapshot = join(dir, "conntrack.snap");
const syn = (src: string, dst: string, sport: number, dport: number) => packet4({ src, dst }).tcp({ sport, dport, flags: { syn: true } });

async function cli(...argv: string[]) {
  const err: string[] = [];
  const code = await run(argv, { out: () => {}, err: (l) => err.push(l) });
  return { code, err: err.join("\n") };
}

/** A forwarder on a fake device, its datapath prepared from the state file as the agent's worker does it. */
async function agentForwarder(snapshotPath?: string) {
  const cfg = loadAgentConfig(state);
  const { dp, restored } = await prepareDatapath({ ...cfg, options: cfg.options!, snapshotPath });
  const tun = new FakeTun({ mtu: 1500 });
  return { dp, tun, restored, fwd: new Forwarder(dp, tun, { batchSize: 16, clock: () => 1000 }) };
}

beforeAll(async () => {
  writeFileSync(state, JSON.stringify({
    conntrack: { tcpEntries: 1024, otherEntries: 1024 },
    nat: { ipv4: { address: NODE, clusterCidrs: ["10.0.1.0/24"] }, seed: 1 },
  }));
  writeFileSync(join(dir, "policy.yaml"), WEB_EGRESS_POLICY);
  for (const args of [
    ["endpoint", "add", "1", "--labels", "app=web", "--ipv4", WEB],
    ["endpoint", "add", "2", "--labels", "app=db", "--ipv4", DB],
    ["policy", "import", join(dir, "policy.yaml")],
  ]) {
    const r = await cli(...args, "--config", state);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
  }
});

describe("the agent's state file in the forwarder", () => {
  test("loadAgentConfig carries the policy tables and the NAT configuration", () => {
    const cfg = loadAgentConfig(state);
    expect(cfg.policy!.endpoints.upsert.map((e) => e.ipv4).sort()).toEqual([WEB, DB]);
    expect(cfg.options!.nat?.ipv4?.address).toBe(NODE);
  });

  test("a flow the policy denies is dropped (DROP_POLICY); allowed ones pass, the one leaving the cluster masqueraded", async () => {
    const { dp, tun, fwd } = await agentForwarder();
    const denied = syn(WEB, DB, 40001, 22);
    const allowed = syn(WEB, DB, 40000, 5432);
    const outside = syn(WEB, OUTSIDE, 40002, 443);
    for (const p of [allowed, denied, outside]) tun.inject(p);
    expect(fwd.step()).toBe(3);
    const written = tun.drainWritten().map((w) => decodePacket(w.packet, "ip"));
    expect(written.map((p) => [p.src, p.dst, p.dport])).toEqual([[WEB, DB, 5432], [NODE, OUTSIDE, 443]]);
    expect(fwd.stats).toMatchObject({ packetsIn: 3, packetsOut: 2, dropped: 1 });
    expect(dp.counters().drops.map((d) => [d.reason, d.packets])).toEqual([["DROP_POLICY", 1]]);
    expect(dp.nat.list().filter((m) => m.dir === "egress").map((m) => [m.src, m.toAddr])).toEqual([[WEB, NODE]]);
  });

  test("the policy is in place before the snapshot is restored: restored flows carry on, new denied ones are still dropped", async () => {
    const first = await agentForwarder();
    first.tun.inject(syn(WEB, OUTSIDE, 40010, 443));
    first.fwd.step();
    writeFileSync(snapshot, takeSnapshot(first.dp));

    const { dp, tun, fwd, restored } = await agentForwarder(snapshot);
    expect(restored.tcp4).toBe(1);
    // The reply to the restored, translated flow finds its NAT mapping and goes back to the pod.
    tun.inject(packet4({ src: OUTSIDE, dst: NODE }).tcp({ sport: 443, dport: 40010, flags: { syn: true, ack: true } }));
    tun.inject(syn(WEB, DB, 40011, 22));
    fwd.step();
    expect(tun.drainWritten().map((w) => decodePacket(w.packet, "ip")).map((p) => [p.src, p.dst, p.dport])).toEqual([[OUTSIDE, WEB, 40010]]);
    expect(dp.counters().drops.map((d) => d.reason)).toEqual(["DROP_POLICY"]);
  });
});
