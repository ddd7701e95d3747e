/** `membrane demo [--seconds N] [--json] [--offloads]`: the live demo, or the replay of the sample when it cannot run. */
import { join } from "node:path";
import { Command } from "commander";
import { runDemo } from "../demo/demo.js";
import { InvalidInputError } from "../errors.js";
import { packageRoot } from "../package-root.js";
import { example, jsonOption, outputOf, setExitCode } from "./command.js";
import { EXIT_FAILURE, EXIT_OK } from "../format/output.js";
import { replay } from "./replay.js";
import { addMetricsOption, withMetrics } from "./metrics-option.js";

export function registerDemo(program: Command): void {
  const cmd = program.command("demo")
    .description("live: the TUN forwarder between network namespaces with a service, policy and NAT (root); without root, the replay of examples/sample.pcap")
    .option("--seconds <n>", "how long the traffic runs, 1..3600")
    .option("--offloads", "TSO/USO and checksum offload on the TUN device", false);
  jsonOption(cmd);
  addMetricsOption(cmd);
  example(cmd, "sudo membrane demo --seconds 10", "membrane demo --json", "sudo membrane demo --seconds 60 --metrics 127.0.0.1:9962");
  cmd.action(async (o: { seconds?: string; json: boolean; offloads: boolean; metrics?: string }, self: Command) => {
    const io = outputOf(self);
    const seconds = o.seconds === undefined ? undefined : Number(o.seconds);
    if (seconds !== undefined && !(seconds > 0 && seconds <= 3600)) throw new InvalidInputError(`--seconds: expected 1..3600, got "${o.seconds}"`);
    const r = await withMetrics(o, io, "demo", (metrics) => runDemo(io, { seconds, json: o.json, offloads: o.offloads, metrics }));
    if (r.ran) {
      setExitCode(self, r.summary.interrupted || r.summary.traffic.every((t) => t.result === "ok") ? EXIT_OK : EXIT_FAILURE);
      return;
    }
    io.err(`membrane demo: ${r.reason}; replaying examples/sample.pcap instead`);
    await replay({
      input: join(packageRoot(), "examples/sample.pcap"), engine: "wasm", json: o.json,
      direction: "auto", gc: "adaptive", summaryOnly: false,
    }, io);
  });
}
