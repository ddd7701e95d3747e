/**
 * `node dist/bench/forwarder-run.js` (package.json: "bench:forwarder"): only
 * the forwarder suite (bench/forwarder.ts), which takes about a minute of
 * live traffic between network namespaces and so is not part of every
 * `npm run bench` (`node dist/bench/run.js --forwarder` runs it after the
 * others).
 *
 * Its summary goes into bench/results/latest.json as suites.forwarder (with
 * its own date); the other suites' results already there are kept, and a
 * file from a different machine is replaced rather than mixed with.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { isDeepStrictEqual } from "node:util";
import { packageRoot } from "../host/package-root.js";
import { machineFacts, printMachineFacts } from "./machine.js";
import { runForwarder } from "./forwarder.js";
import { InvalidInputError } from "../host/errors.js";

async function main(): Promise<void> {
  const machine = machineFacts();
  printMachineFacts(machine);
  console.log("\n== forwarder ==");
  const t0 = performance.now();
  const result = await runForwarder();
  const seconds = (performance.now() - t0) / 1000;
  console.log(`  (forwarder: ${seconds.toFixed(1)} s)`);

  const dir = join(packageRoot(), "bench", "results");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, "latest.json");
  let summary: { date: string; machine: unknown; seconds: number; suites: Record<string, unknown> } | undefined;
  if (existsSync(file)) {
    try {
      const old = JSON.parse(readFileSync(file, "utf8")) as typeof summary;
      if (old && isDeepStrictEqual(old.machine, machine) && typeof old.suites === "object") summary = old;
    } catch {
      // unreadable: start afresh
    }
  }
  summary ??= { date: new Date().toISOString(), machine, seconds, suites: {} };
  summary.suites.forwarder = result;
  writeFileSync(file, JSON.stringify(summary, null, 2) + "\n");
  console.log(`\nSummary written to ${file} (suites.forwarder)`);
}

main().catch((e: unknown) => {
  // A bad setting (FORWARDER_BENCH_*_ORDER) is said in one line; anything else with its stack.
  console.error(e instanceof InvalidInputError ? `forwarder bench: ${e.message}` : e instanceof Error ? (e.stack ?? e.message) : e);
  process.exitCode = 1;
});
