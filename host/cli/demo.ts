/**
 * `membrane demo`: the two-node cluster demo (host/demo/cluster/); `--single`
 * the single-node forwarder demo; without root, the replay of the sample.
 */
import { join } from "node:path";
import { Command, Option } from "commander";
import { runDemo } from "../demo/demo.js";
import { clusterDemoOk, runClusterDemo } from "../demo/cluster/cluster-demo.js";
import { InvalidInputError } from "../errors.js";
import { packageRoot } from "../package-root.js";
import { example, jsonOption, outputOf, setExitCode } from "./command.js";
import { EXIT_FAILURE, EXIT_OK } from "../format/output.js";
import { replay } from "./replay.js";
import { addMetricsOption, withMetrics } from "./metrics-option.js";
import { parseMetricsFlag } from "../metrics/process-metrics.js";
import { nodeMetricsAddresses } from "../demo/cluster/metrics-bridge.js";

export function registerDemo(program: Command): void {
  const cmd = program.command("demo")
    .description("live (root): a two-node cluster (agents with TUN forwarders, operator, kvstore) under traffic and changes; --single: one node's forwarder; without root, the replay of examples/sample.pcap")
    .option("--single", "the single-node demo: one forwarder between namespaces with a service, policy and NAT", false)
    .option("--seconds <n>", "--single: how long the traffic runs, 1..3600")
    .option("--offloads", "--single: TSO/USO and checksum offload on the TUN device", false)
    .addOption(new Option("--kvstore <spec>", "the cluster's kvstore: embedded:<dir> or etcd:<host:port,...> reachable from the node namespaces (default: an embedded store in a temporary dir)"))
    .option("--encrypt", "cluster demo: traffic between the nodes in userspace ESP (AES-GCM-128 in UDP 4500), and the key rotated under the streams", false);
  jsonOption(cmd);
  addMetricsOption(cmd);
  example(cmd, "sudo membrane demo", "sudo membrane demo --single --seconds 10", "membrane demo --json", "sudo membrane demo --single --seconds 60 --metrics 127.0.0.1:9962",
    "sudo membrane demo --metrics 127.0.0.1:9962   # n1's agent on :9962, n2's on :9963", "sudo membrane demo --encrypt");
  cmd.action(async (o: { single: boolean; seconds?: string; json: boolean; offloads: boolean; kvstore?: string; metrics?: string; encrypt: boolean }, self: Command) => {
    const io = outputOf(self);
    const seconds = o.seconds === undefined ? undefined : Number(o.seconds);
    if (seconds !== undefined && !(seconds > 0 && seconds <= 3600)) throw new InvalidInputError(`--seconds: expected 1..3600, got "${o.seconds}"`);
    if (!o.single && (o.seconds !== undefined || o.offloads)) throw new InvalidInputError("--seconds and --offloads belong to the single-node demo: add --single");
    if (o.single && (o.kvstore !== undefined || o.encrypt)) throw new InvalidInputError(`${o.encrypt ? "--encrypt" : "--kvstore"} belongs to the cluster demo: drop --single`);
    if (o.kvstore !== undefined && !/^(embedded|etcd):./.test(o.kvstore)) throw new InvalidInputError(`--kvstore ${o.kvstore}: expected embedded:<dir> or etcd:<host:port,...>`);
    if (!o.single) {
      // Each node's agent serves its own metrics; the demo brings n1's to the address given, n2's to the next port.
      const metrics = parseMetricsFlag(o.metrics);
      if (metrics) nodeMetricsAddresses(metrics, ["n1", "n2"]);
      const r = await runClusterDemo(io, { kvstore: o.kvstore, json: o.json, metrics, encrypt: o.encrypt });
      if (r.ran) {
        setExitCode(self, r.summary.interrupted || clusterDemoOk(r.summary) ? EXIT_OK : EXIT_FAILURE);
        return;
      }
      io.err(`membrane demo: ${r.reason}; replaying examples/sample.pcap instead`);
    } else {
      const r = await withMetrics(o, io, "demo", (metrics) => runDemo(io, { seconds, json: o.json, offloads: o.offloads, metrics }));
      if (r.ran) {
        setExitCode(self, r.summary.interrupted || r.summary.traffic.every((t) => t.result === "ok") ? EXIT_OK : EXIT_FAILURE);
        return;
      }
      io.err(`membrane demo: ${r.reason}; replaying examples/sample.pcap instead`);
    }
    await replay({
      input: join(packageRoot(), "examples/sample.pcap"), engine: "wasm", json: o.json,
      direction: "auto", gc: "adaptive", summaryOnly: false,
    }, io);
  });
}
