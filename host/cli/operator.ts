/**
 * `membrane operator`: run one operator instance (host/operator/operator.ts).
 * Start several for failover: one leads, the others wait for the leader
 * lock. Exits 0 on SIGINT/SIGTERM (releasing the lock, so a standby takes
 * over at once) and 1 when it loses leadership (restart it: it becomes a
 * standby).
 */
import { Command, Option } from "commander";
import { InvalidInputError } from "../errors.js";
import { DEFAULT_IDENTITY_GC_INTERVAL_MS, DEFAULT_LEASE_TTL_SECONDS, runOperator } from "../operator/operator.js";
import { addKvstoreOptions, openKvstoreFromOptions, type KvstoreCliOptions } from "./kvstore-options.js";
import { processOutput, type Output } from "../format/output.js";
import { addMetricsOption, withMetrics } from "./metrics-option.js";

interface OperatorCliOptions extends KvstoreCliOptions {
  leaseTtl: string;
  identityGcInterval: string;
  watchDir?: string;
  name?: string;
  metrics?: string;
}

export interface RegisterOperatorOptions {
  output?: (cmd: Command) => Output;
  /** Stops the operator (tests); SIGINT/SIGTERM otherwise. */
  signal?: AbortSignal;
}

function positive(text: string, option: string, min: number): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n < min) throw new InvalidInputError(`${option}: expected a number >= ${min}, got ${JSON.stringify(text)}`);
  return n;
}

export function registerOperator(program: Command, options: RegisterOperatorOptions = {}): void {
  const output = options.output ?? (() => processOutput);
  const cmd = program
    .command("operator")
    .description("convert the stored manifests into the slim records agents read, collect unused identities (one leader, the others standby)")
    .addOption(new Option("--lease-ttl <seconds>", "leader lease TTL: a dead leader is replaced within two of these").default(String(DEFAULT_LEASE_TTL_SECONDS)))
    .addOption(new Option("--identity-gc-interval <seconds>", "how often identities no node uses are collected (0: never)").default(String(DEFAULT_IDENTITY_GC_INTERVAL_MS / 1000)))
    .addOption(new Option("--watch-dir <dir>", "also follow a directory of manifest files as desired state"))
    .addOption(new Option("--name <name>", "this instance's name in log lines (default operator-<pid>)"));
  addKvstoreOptions(cmd);
  addMetricsOption(cmd);
  cmd.addHelpText("after", "\nExamples:\n  $ membrane operator --kvstore embedded:/var/lib/membrane/kvstore\n  $ membrane operator --kvstore etcd:127.0.0.1:2379 --lease-ttl 5 --watch-dir manifests/\n  $ membrane operator --kvstore embedded:/var/lib/membrane/kvstore --metrics 127.0.0.1:9963");
  cmd.action(async (o: OperatorCliOptions, self: Command) => {
    const io = output(self);
    const ttl = positive(o.leaseTtl, "--lease-ttl", 1);
    if (!Number.isInteger(ttl)) throw new InvalidInputError(`--lease-ttl: whole seconds, got ${o.leaseTtl}`);
    const gcMs = positive(o.identityGcInterval, "--identity-gc-interval", 0) * 1000;
    const name = o.name ?? `operator-${process.pid}`;
    return withMetrics(o, io, "operator", async (metrics) => {
      const store = await openKvstoreFromOptions(o, process.env, metrics);
      const stop = new AbortController();
      const onSignal = () => stop.abort();
      if (options.signal) options.signal.addEventListener("abort", onSignal, { once: true });
      else {
        process.once("SIGINT", onSignal);
        process.once("SIGTERM", onSignal);
      }
      try {
        await runOperator(store, {
          leaseTtlSeconds: ttl,
          identityGcIntervalMs: gcMs,
          watchDir: o.watchDir,
          signal: stop.signal,
          log: (line) => io.out(`${new Date().toISOString()} ${name}: ${line}`),
        });
      } finally {
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
        await store.close();
      }
    });
  });
}
