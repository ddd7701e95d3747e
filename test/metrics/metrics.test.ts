// Metrics: a scrape after known traffic returns exactly what the datapath
// decided, on both engines; the exposition passes promtool; the endpoint
// listens only where it is asked to.
import { spawnSync } from "node:child_process";
import { connect } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { Datapath } from "../../host/datapath.js";
import { KernelDatapath } from "../../host/kernel/datapath.js";
import type { DatapathEngine } from "../../host/engine.js";
import { createMetrics, registerDatapathCollector, startMetricsServer, parseListenAddress, type MetricsServer } from "../../host/metrics/index.js";
import { packet4, packet6 } from "../../host/packet/index.js";
import { kernelUnavailable } from "../differential/kernel-available.js";
import { describeIf } from "../support/describe-if.js";
import { sample } from "./support.js";

/** Traffic with known outcomes: 3 forwarded egress, 2 forwarded ingress, 2 malformed (egress). */
function drive(dp: DatapathEngine): void {
  const now = 100;
  const c4 = packet4({ src: "10.0.1.10", dst: "10.0.2.20" });
  const s4 = packet4({ src: "10.0.2.20", dst: "10.0.1.10" });
  const c6 = packet6({ src: "fd00::10", dst: "fd00::20" });
  const packets = [
    c4.tcp({ sport: 40000, dport: 80, flags: { syn: true } }),
    s4.tcp({ sport: 80, dport: 40000, flags: { syn: true, ack: true } }),
    c4.tcp({ sport: 40000, dport: 80, flags: { ack: true } }),
    c6.udp({ sport: 5000, dport: 53, payload: new Uint8Array(20) }),
    packet6({ src: "fd00::20", dst: "fd00::10" }).udp({ sport: 53, dport: 5000, payload: new Uint8Array(30) }),
  ];
  for (const p of packets) dp.decide(p, { now, link: "ip" });
  // An IPv4 header length below 20 bytes and a TCP segment cut short: both malformed, both egress.
  const badIhl = c4.tcp({ sport: 1, dport: 2, flags: { syn: true } }).slice();
  badIhl[0] = 0x44;
  dp.decide(badIhl, { now, link: "ip", direction: "egress" });
  dp.decide(c4.tcp({ sport: 1, dport: 2, flags: { syn: true } }).subarray(0, 24), { now, link: "ip", direction: "egress" });
}

const engines: { name: string; missing: string | undefined; create: () => Promise<DatapathEngine> }[] = [
  { name: "wasm", missing: undefined, create: () => Datapath.create({ conntrack: { tcpEntries: 1024, otherEntries: 1024 } }) },
  { name: "bpf", missing: kernelUnavailable(), create: () => KernelDatapath.create({ conntrack: { tcpEntries: 1024, otherEntries: 1024 } }) },
];

for (const engine of engines) {
  describeIf(`metrics from the ${engine.name} datapath`, engine.missing, () => {
    it("a scrape returns the forwards and drops the datapath decided, by direction and reason", async () => {
      const dp = await engine.create();
      try {
        const metrics = createMetrics();
        registerDatapathCollector(metrics.registry, () => ({ counters: dp.counters() }));
        const before = await metrics.registry.metrics();
        expect(sample(before, "membrane_forward_count_total", { direction: "EGRESS" })).toBe(0);
        drive(dp);
        const text = await metrics.registry.metrics();
        const counters = dp.counters();
        expect(sample(text, "membrane_forward_count_total", { direction: "EGRESS" })).toBe(counters.forwarded.egress.packets);
        expect(sample(text, "membrane_forward_count_total", { direction: "INGRESS" })).toBe(counters.forwarded.ingress.packets);
        expect(counters.forwarded.egress.packets + counters.forwarded.ingress.packets).toBe(5);
        expect(sample(text, "membrane_forward_bytes_total", { direction: "EGRESS" })).toBe(counters.forwarded.egress.bytes);
        const drops = counters.drops.filter((d) => d.direction === "egress");
        expect(drops.reduce((n, d) => n + d.packets, 0)).toBe(2);
        for (const d of drops) {
          expect(sample(text, "membrane_drop_count_total", { reason: d.text, direction: "EGRESS" })).toBe(d.packets);
          expect(sample(text, "membrane_drop_bytes_total", { reason: d.text, direction: "EGRESS" })).toBe(d.bytes);
        }
        expect(sample(text, "membrane_datapath_conntrack_gc_entries", { table: "tcp4", status: "alive" })).toBe(1);
        expect(sample(text, "membrane_datapath_conntrack_gc_entries", { table: "any6", status: "alive" })).toBe(1);
      } finally {
        dp.close();
      }
    });
  });
}

const promtoolMissing = spawnSync("promtool", ["--version"]).error ? "promtool is not installed (Debian: prometheus)" : undefined;

describeIf("the exposition passes promtool", promtoolMissing, () => {
  it("promtool check metrics reports nothing after traffic, with every host metric observed", async () => {
    const dp = await Datapath.create({ conntrack: { tcpEntries: 1024, otherEntries: 1024 } });
    try {
      const metrics = createMetrics();
      registerDatapathCollector(metrics.registry, () => ({ counters: dp.counters(), natMappings: 0, services: 2, policies: 1, identities: 7, lastGcSeconds: 0.001, forwarder: { batches: 2, reads: 2, writes: 2, packetsIn: 7, bytesIn: 500, wirePacketsIn: 7, packetsOut: 5, bytesOut: 400, dropped: 2, offloadUnwritable: 0, writeErrors: 0, gcRuns: 0, coalescedWrites: 3, coalescedPackets: 40,
        tunIo: [{ mode: "batch", decisions: 4, switches: 1, nsPerPacket: { uring: 4200, batch: 3800 } }, { mode: "uring", decisions: 3, switches: 2, nsPerPacket: {} }] } }));
      drive(dp);
      metrics.kvstoreOperations.observe({ action: "put", kind: "ipcache", outcome: "success", scope: "node" }, 0.002);
      metrics.kvstoreEventsQueue.observe({ action: "create", scope: "ipcache" }, 0.0001);
      metrics.bpfSyscalls.observe({ operation: "map_update", outcome: "success" }, 0.00001);
      metrics.bpfMapOps.inc({ map_name: "ct4", operation: "update", outcome: "success" });
      metrics.apiProcessTime.observe({ method: "GET", path: "/v1/status", return_code: "200" }, 0.001);
      metrics.agentBootstrap.observe({ scope: "kvstore", outcome: "success" }, 0.5);
      metrics.endpointRegenerations.inc({ outcome: "success" }, 3);
      const text = await metrics.registry.metrics();
      const check = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
      expect(`${check.stdout}${check.stderr}`.trim()).toBe("");
      expect(check.status).toBe(0);
      // GSO on write: the forwarder's coalescing counters are exported.
      expect(text).toMatch(/forwarder_coalesced_writes_total\S* 3\n/);
      expect(text).toMatch(/forwarder_coalesced_packets_total\S* 40\n/);
      // Adaptive TUN I/O: threads by mode, switches summed over threads.
      expect(sample(text, "membrane_forwarder_tun_io_threads", { mode: "batch" })).toBe(1);
      expect(sample(text, "membrane_forwarder_tun_io_threads", { mode: "uring" })).toBe(1);
      expect(text).toMatch(/forwarder_tun_io_switches_total\S* 3\n/);
      // promtool's silence means something only if it reads what we think: a bad name is reported.
      const broken = spawnSync("promtool", ["check", "metrics"], { input: "# TYPE bad_counter counter\nbad_counter 1\n", encoding: "utf8" });
      expect(`${broken.stdout}${broken.stderr}`).toContain("_total");
    } finally {
      dp.close();
    }
  });
});

describe("the metrics endpoint", () => {
  let server: MetricsServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it("defaults to loopback and refuses names and bad ports", () => {
    expect(parseListenAddress(":9962")).toEqual({ host: "127.0.0.1", port: 9962 });
    expect(parseListenAddress("9962")).toEqual({ host: "127.0.0.1", port: 9962 });
    expect(parseListenAddress("[::1]:9000")).toEqual({ host: "::1", port: 9000 });
    expect(() => parseListenAddress("localhost:9962")).toThrow(/not an IP address/);
    expect(() => parseListenAddress("127.0.0.1:70000")).toThrow(/1\.\.65535/);
    expect(() => parseListenAddress("::1:9962")).toThrow(/brackets/);
  });

  it("listens only on the address it was given and serves GET /metrics", async () => {
    const metrics = createMetrics();
    server = await startMetricsServer(metrics.registry, { host: "127.0.0.1", port: 0 });
    expect(server.address.host).toBe("127.0.0.1");
    const res = await fetch(`http://127.0.0.1:${server.address.port}/metrics`);
    expect(res.status).toBe(200);
    expect(await res.text()).toContain("membrane_endpoint_regenerations_total");
    expect((await fetch(`http://127.0.0.1:${server.address.port}/other`)).status).toBe(404);
    // The same port on another loopback address is not served: nothing listens on all addresses.
    const refused = await new Promise<boolean>((resolve) => {
      const s = connect({ host: "127.0.0.2", port: server!.address.port });
      s.once("connect", () => (s.destroy(), resolve(false)));
      s.once("error", () => resolve(true));
    });
    expect(refused).toBe(true);
  });
});
