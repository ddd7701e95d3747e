// `membrane agent` and `membrane status`: arguments, and the status of a real agent run.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { cli } from "../support/run-cli.js";
import { writeStatus } from "../../host/agent/status-file.js";
import { lockStateDir } from "../../host/agent/state-dir.js";
import { parseCidr } from "../../host/agent/agent.js";
import { offloadsFromFlags } from "../../host/cli/agent.js";

const dir = mkdtempSync(join(tmpdir(), "membrane-agent-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const natOptions = join(dir, "nat.json");
writeFileSync(natOptions, JSON.stringify({ nat: { ipv4: { address: "192.0.2.1" } } }));

describe("membrane agent", () => {
  test.each([
    [["agent"], '--datapath must be "tun" or "bpf" (got nothing)'],
    [["agent", "--datapath", "xdp"], '(got "xdp")'],
    [["agent", "--datapath", "bpf"], "--config <state file> is required"],
    [["agent", "--datapath", "bpf", "--config", "s.json", "--route", "10.0.0.0/8"], "--route is for the TUN datapath only"],
    [["agent", "--datapath", "bpf", "--config", "s.json", "--endpoint-device", "41"], "--endpoint-device 41: expected ID=IFNAME"],
    [["agent", "--datapath", "bpf", "--config", "s.json", "--endpoint-device", "0=lxc0"], "--endpoint-device: expected 1..65535"],
    [["agent", "--datapath", "bpf", "--config", "s.json", "--endpoint-device", "4=lxc0", "--endpoint-device", "4=lxc1"], "endpoint 4 given twice"],
    [["agent", "--datapath", "bpf", "--config", "/nonexistent/state.json", "--state-dir", "/nonexistent/run"], "/nonexistent/state.json"],
    [["agent", "--datapath", "bpf", "--kvstore", "embedded:/nonexistent/kv", "--node", "n1", "--node-ip", "192.0.2.1", "--endpoint-device", "41=lxc41"], "in cluster mode expected NAMESPACE/POD=IFNAME"],
    [["agent", "--datapath", "bpf", "--kvstore", "embedded:/nonexistent/kv", "--node", "n1", "--node-ip", "192.0.2.1", "--endpoint-device", "default/web=lxcweb", "--endpoint-device", "default/web=lxcw2"], "pod default/web given twice"],
    [["agent", "--datapath", "bpf", "--kvstore", "embedded:/nonexistent/kv", "--node", "n1", "--node-ip", "192.0.2.1", "--route", "10.0.0.0/8"], "--route is for the TUN datapath only"],
    [["agent", "--datapath", "bpf", "--kvstore", "embedded:/nonexistent/kv", "--node", "n1"], "--node-ip <address> is required"],
    [["agent", "--datapath", "bpf", "--kvstore", "embedded:/nonexistent/kv", "--node", "n1", "--node-ip", "192.0.2.1", "--datapath-options", natOptions], "nat is on, which with --datapath bpf needs --external-device"],
    [["agent", "--datapath", "bpf", "--config", "s.json", "--datapath-options", natOptions], "--datapath-options is for cluster mode"],
    [["agent", "--datapath", "tun", "--mtu", "9"], "--mtu: expected 576..65535"],
    [["agent", "--datapath", "tun", "--route", "10.0.0.0/33"], "prefix length 33 is too long for IPv4"],
    [["agent", "--datapath", "tun", "--route", "banana"], "expected ADDRESS/PREFIX-LENGTH"],
    [["agent", "--datapath", "tun", "--snapshot-interval", "0"], '--snapshot-interval: expected seconds from 0.1 to 86400, got "0"'],
    [["agent", "--datapath", "tun", "--route-table", "main"], '--route-table: expected a table number 1..4294967295, got "main"'],
    [["agent", "--datapath", "tun", "--route-table", "100", "--route-rule", "iif lo goto 5"], '"goto" is not a rule selector'],
    [["agent", "--datapath", "tun", "--queues", "2", "--offloads", "--io-workers"], "--io-workers and --offloads"],
  ])("%j is refused before anything is set up", async (argv, message) => {
    const r = await cli(...argv);
    expect(r.code).not.toBe(0);
    expect(r.err).toContain(message);
  });

  test("offloads are on unless encryption or I/O threads need them off; an explicit choice wins", () => {
    expect(offloadsFromFlags({})).toEqual({ on: true, why: "default" });
    expect(offloadsFromFlags({ offloads: false })).toEqual({ on: false, why: "--no-offloads" });
    expect(offloadsFromFlags({ encryptKeys: "k" })).toEqual({ on: false, why: "--encrypt-keys seals packets one by one" });
    expect(offloadsFromFlags({ ioWorkers: true })).toEqual({ on: false, why: "--io-workers: a ring slot holds one packet" });
    expect(offloadsFromFlags({ ioWorkers: false })).toEqual({ on: true, why: "default" });
    // Explicitly on with encryption is refused later, by encryptFromFlags (test/cli/encrypt.test.ts).
    expect(offloadsFromFlags({ offloads: true, encryptKeys: "k" })).toEqual({ on: true, why: "--offloads" });
    expect(() => offloadsFromFlags({ offloads: true, ioWorkers: true })).toThrow(/--io-workers and --offloads/);
  });

  test("routes of both families are accepted", () => {
    expect(parseCidr("10.200.0.0/16")).toBe("10.200.0.0/16");
    expect(parseCidr("fd00:200::/48")).toBe("fd00:200::/48");
  });
});

describe("membrane status", () => {
  test("says no agent runs when there is no status, or its process is gone", async () => {
    expect((await cli("status", "--state-dir", join(dir, "none"))).err).toContain("no membrane agent is running");
    writeStatus(dir, { pid: 2 ** 22 + 17, datapath: "tun", device: "mbr0", mtu: 1500, routes: [], startedAt: "", updatedAt: "", restoredEntries: 0, entries: 0, stats: { batches: 0, reads: 0, writes: 0, packetsIn: 0, bytesIn: 0, packetsOut: 0, bytesOut: 0, dropped: 0, writeErrors: 0, gcRuns: 0, wirePacketsIn: 0, offloadUnwritable: 0 }, counters: { forwarded: { egress: { packets: 0, bytes: 0 }, ingress: { packets: 0, bytes: 0 } }, drops: [], tables: {} as never }, flows: [] });
    expect((await cli("status", "--state-dir", dir)).err).toContain("no membrane agent is running");
  });

  test("prints a live agent's status, as text and JSON", async () => {
    // A live agent holds its state dir's lock (that, not the PID, is what `membrane status` trusts).
    const lock = await lockStateDir(dir, () => undefined);
    afterAll(() => lock.release());
    writeStatus(dir, {
      pid: process.pid, datapath: "tun", device: "mbr9", mtu: 1400, routes: ["10.9.0.0/16"], startedAt: "t0", updatedAt: "t1",
      restoredEntries: 2, entries: 3, stats: { batches: 4, reads: 10, writes: 9, packetsIn: 10, bytesIn: 1000, packetsOut: 9, bytesOut: 900, dropped: 1, writeErrors: 0, gcRuns: 0, wirePacketsIn: 10, offloadUnwritable: 0, coalescedWrites: 2, coalescedPackets: 7,
        tunIo: [{ mode: "batch", decisions: 2, switches: 1, nsPerPacket: { uring: 4200.4, batch: 3800 } }, { mode: "uring", decisions: 0, switches: 0, nsPerPacket: {} }] },
      counters: { forwarded: { egress: { packets: 9, bytes: 900 }, ingress: { packets: 0, bytes: 0 } }, drops: [{ reason: "DROP_INVALID", code: 134, text: "", direction: "egress", packets: 1, bytes: 100 }], tables: {} as never },
      flows: [{ table: "tcp4", flow: "10.9.0.1:1 -> 10.9.0.2:80", proto: "TCP", txPackets: 5, rxPackets: 4, state: "seen-non-syn", expiresIn: 21599 }],
      nat: [{ table: "nat4", proto: "UDP", flow: "10.9.0.1:5000 -> 192.0.2.7:53", source: "198.51.100.1:5000" }],
      natMappings: 1,
    });
    const r = await cli("status", "--state-dir", dir);
    expect(r.out).toContain("masquerading: 1 NAT mapping");
    expect(r.out).toMatch(/nat4\s+UDP\s+10\.9\.0\.1:5000 -> 192\.0\.2\.7:53\s+198\.51\.100\.1:5000/);
    expect(r.code).toBe(0);
    expect(r.out).toContain("datapath tun on mbr9 (mtu 1400)");
    expect(r.out).toContain("packets: 10 in, 9 out, 1 dropped in 4 batches");
    // GSO on write (offload passthrough): the super-packets and what they carried.
    expect(r.out).toContain("writes: 9, of which 2 coalesced super-packets carrying 7 packets");
    // Adaptive TUN I/O: each thread's mode and what it measured.
    expect(r.out).toContain("tun io adaptive: batch (2 decisions, 1 switch; uring 4,200, batch 3,800 ns/pkt); uring (0 decisions, 0 switches)");
    expect(r.out).toMatch(/tcp4\s+TCP\s+10\.9\.0\.1:1 -> 10\.9\.0\.2:80\s+5\s+4\s+seen-non-syn\s+21599s/);
    expect(JSON.parse((await cli("status", "--state-dir", dir, "--json")).out).device).toBe("mbr9");
  });
});
