/**
 * `npm run bench`: runs every suite, prints a table per suite, and writes a
 * JSON summary to bench/results/latest.json and the printed tables to
 * bench/results/latest.md (both ignored by git: results belong to the machine
 * that produced them; docs/benchmarks.md quotes a run's .md).
 *
 * The memory suite runs first, in a process whose heap is still small, so its
 * RSS deltas are not blurred by the conntrack suite's datapath (256 MiB of
 * Wasm memory that stays mapped until the garbage collector frees it).
 *
 * The kernel suite (Wasm vs the BPF program under BPF_PROG_TEST_RUN) runs
 * last; it skips itself, saying why, without root or build/bpf/bpf_test.o.
 *
 * `--forwarder` adds the forwarder suite (live traffic through the TUN
 * forwarder between network namespaces, about a minute) after the others;
 * `npm run bench:forwarder` (bench/forwarder-run.ts) runs it alone.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { packageRoot } from "../host/package-root.js";
import { machineFacts, printMachineFacts } from "./machine.js";
import { runMemory } from "./memory.js";
import { runConntrack } from "./conntrack.js";
import { runKernel } from "./kernel.js";
import { runPolicy } from "./policy.js";
import { runNat } from "./nat.js";
import { runLb } from "./lb.js";
import { runForwarder } from "./forwarder.js";
import { Transcript } from "./transcript.js";
import { runSnapshot } from "./snapshot.js";

interface Suite {
  name: string;
  /** Prints its own table(s) and returns what goes into the summary (JSON-serializable). */
  run(): Promise<unknown>;
}

const SUITES: Suite[] = [
  { name: "memory", run: runMemory },
  { name: "conntrack", run: runConntrack },
  { name: "kernel", run: runKernel },
  { name: "policy", run: runPolicy },
  { name: "nat", run: runNat },
  { name: "lb", run: runLb },
  { name: "snapshot", run: runSnapshot },
];
if (process.argv.includes("--forwarder")) SUITES.push({ name: "forwarder", run: runForwarder });

async function main(): Promise<void> {
  const machine = machineFacts();
  printMachineFacts(machine);
  const transcript = new Transcript(`npm run bench${process.argv.includes("--forwarder") ? " -- --forwarder" : ""}`, machine);

  const started = performance.now();
  const results: Record<string, unknown> = {};
  for (const suite of SUITES) {
    console.log(`\n== ${suite.name} ==`);
    transcript.section(suite.name);
    const t0 = performance.now();
    results[suite.name] = await suite.run();
    console.log(`  (${suite.name}: ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  }
  const seconds = (performance.now() - started) / 1000;

  const dir = join(packageRoot(), "bench", "results");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, "latest.json");
  const summary = { date: new Date().toISOString(), machine, seconds, suites: results };
  writeFileSync(file, JSON.stringify(summary, null, 2) + "\n");
  console.log(`\nAll suites done in ${seconds.toFixed(1)} s; summary written to ${file}`);
  console.log(`printed output kept in ${transcript.write("latest")}`);
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : e);
  process.exitCode = 1;
});
