/**
 * `membrane sim`: simulate a cluster against a real kvstore (a private etcd
 * on loopback by default) and report convergence, kvstore load, per-agent
 * cost and each Cilium 1.5 scale mechanism on and off (host/sim/).
 */
import { Command, Option } from "commander";
import { example, integerArg, jsonOption, outputOf, setExitCode } from "./command.js";
import { EXIT_FAILURE } from "../format/output.js";
import { InvalidInputError } from "../errors.js";
import { DEFAULT_SIM, RESTART_VARIANTS, runSimulation, type RestartVariant, type SimOptions } from "../sim/simulation.js";
import { reportJson, reportLines, writeReportFiles } from "../sim/report.js";
import { tempEmbeddedSpec } from "../sim/store-target.js";

interface SimCliOptions {
  nodes?: string;
  pods?: string;
  services?: string;
  labelSets?: string;
  agents?: string;
  fullAgents?: string;
  agentsPerClient?: string;
  kvstore: string;
  churnSeconds?: string;
  podRate?: string;
  joinNodes?: string;
  apiserverQps?: string;
  operatorQps?: string;
  leaseTtl?: string;
  listPageSize?: string;
  listPagesInFlight?: string;
  restartVariants?: string;
  resyncAgents?: string;
  callTimeoutMs?: string;
  operatorAttempts?: string;
  convergeTimeoutMs?: string;
  joinTimeoutMs?: string;
  out?: string;
  json: boolean;
  quiet: boolean;
}

function parseRestartVariants(v: string): RestartVariant[] {
  if (v.trim() === "none") return [];
  const out: RestartVariant[] = [];
  for (const part of v.split(",").map((x) => x.trim())) {
    if (!(RESTART_VARIANTS as readonly string[]).includes(part)) {
      throw new InvalidInputError(`--restart-variants: expected a comma-separated list of ${RESTART_VARIANTS.join(", ")} (or none), got "${part}"`);
    }
    out.push(part as RestartVariant);
  }
  return out;
}

export function registerSim(program: Command): void {
  const cmd = program
    .command("sim")
    .description("simulate a cluster (operator, full and counting agents, churn, mass restart) against a real kvstore and report what each scale mechanism does")
    .addOption(new Option("--nodes <n>", "nodes, one agent each").default(String(DEFAULT_SIM.nodes)))
    .addOption(new Option("--pods <n>", "pods (at most 200 per node)").default(String(DEFAULT_SIM.pods)))
    .addOption(new Option("--services <n>", "services with 3 backends each").default(String(DEFAULT_SIM.services)))
    .addOption(new Option("--label-sets <n>", "distinct pod label sets (= identities shared by the pods)").default(String(DEFAULT_SIM.labelSets)))
    .addOption(new Option("--agents <n>", "agents to run, on nodes 0..n-1 (default: one per node)"))
    .addOption(new Option("--full-agents <n>", "agents running the real agent core (the rest count events)").default(String(DEFAULT_SIM.fullAgents)))
    .addOption(new Option("--agents-per-client <n>", "agents sharing one kvstore client connection").default(String(DEFAULT_SIM.agentsPerClient)))
    .addOption(new Option("--kvstore <spec>", "etcd (start a private one on loopback), etcd:<endpoints> or embedded[:<path>]").default("etcd"))
    .addOption(new Option("--churn-seconds <s>", "how long pods are created and deleted").default(String(DEFAULT_SIM.churnSeconds)))
    .addOption(new Option("--pod-rate <n>", "pods created per second during churn").default(String(DEFAULT_SIM.podRate)))
    .addOption(new Option("--join-nodes <n>", "nodes joining in one burst").default(String(DEFAULT_SIM.joinNodes)))
    .addOption(new Option("--apiserver-qps <n>", "rate above which the apiserver stand-in answers 429").default(String(DEFAULT_SIM.apiserverQps)))
    .addOption(new Option("--operator-qps <n>", "the operator's kvstore rate limit").default(String(DEFAULT_SIM.operatorQps)))
    .addOption(new Option("--lease-ttl <seconds>", "agents' node lease TTL (Cilium 1.5: 900)").default(String(DEFAULT_SIM.leaseTtlSeconds)))
    .addOption(new Option("--list-page-size <n>", "keys per list page (lists are paged at one pinned revision)").default(String(DEFAULT_SIM.listPageSize)))
    .addOption(new Option("--list-pages-in-flight <n>", "list pages fetched and decoded at once across all agents (a queue, not a stampede); 0: no limit").default(String(DEFAULT_SIM.listPagesInFlight)))
    .addOption(new Option("--restart-variants <list>", `synchronized restarts to run: comma-separated ${RESTART_VARIANTS.join(",")}, or none`).default(DEFAULT_SIM.restartVariants.join(",")))
    .addOption(new Option("--resync-agents <n>", "counting agents in the resync-interval phase (0: all)").default(String(DEFAULT_SIM.resyncAgents)))
    .addOption(new Option("--call-timeout-ms <ms>", "per-call deadline of the etcd clients (one list page is one call)").default(String(DEFAULT_SIM.callTimeoutMs)))
    .addOption(new Option("--operator-attempts <n>", "attempts per operator write (backoff with jitter between them) before it is counted as failed and the phase goes on").default(String(DEFAULT_SIM.operatorAttempts)))
    .addOption(new Option("--converge-timeout-ms <ms>", "bound of every wait for agents to converge (and of each operator write); past it the phase is reported INCOMPLETE, naming the agents behind, and the run goes on").default(String(DEFAULT_SIM.convergeTimeoutMs)))
    .addOption(new Option("--join-timeout-ms <ms>", "bound of a join (every counting agent up, every full agent started); past it the phase is reported INCOMPLETE").default(String(DEFAULT_SIM.joinTimeoutMs)))
    .addOption(new Option("--out <dir>", "also write sim-report.txt, sim-report.json and the SVG plots here"))
    .addOption(new Option("--quiet", "no progress lines on stderr").default(false));
  jsonOption(cmd, "the report as one JSON object instead of tables");
  example(cmd, "membrane sim --nodes 50 --pods 1000 --services 200", "membrane sim --nodes 5000 --pods 100000 --services 20000 --label-sets 2000 --out bench/results", "membrane sim --kvstore embedded --json");
  cmd.action(async (o: SimCliOptions, self: Command) => {
    const io = outputOf(self);
    const int = (name: string, v: string | undefined, min: number, max: number) => integerArg(name, v, min, max)!;
    let kvstore = o.kvstore;
    let cleanup = () => {};
    if (kvstore === "embedded") {
      const t = tempEmbeddedSpec();
      kvstore = t.spec;
      cleanup = t.remove;
    } else if (kvstore !== "etcd" && !/^(etcd|embedded):./.test(kvstore)) {
      throw new InvalidInputError(`--kvstore: expected etcd, etcd:<endpoints>, embedded or embedded:<path>, got "${kvstore}"`);
    }
    const options: SimOptions = {
      ...DEFAULT_SIM,
      nodes: int("nodes", o.nodes, 2, 60_000),
      pods: int("pods", o.pods, 2, 2_000_000),
      services: int("services", o.services, 1, 1_000_000),
      labelSets: int("label-sets", o.labelSets, 1, 59_000),
      agents: integerArg("agents", o.agents, 2, 60_000) ?? 0,
      fullAgents: int("full-agents", o.fullAgents, 2, 1000),
      agentsPerClient: int("agents-per-client", o.agentsPerClient, 1, 100_000),
      churnSeconds: int("churn-seconds", o.churnSeconds, 1, 3600),
      podRate: int("pod-rate", o.podRate, 1, 10_000),
      joinNodes: int("join-nodes", o.joinNodes, 0, 50_000),
      apiserverQps: int("apiserver-qps", o.apiserverQps, 1, 1_000_000),
      operatorQps: int("operator-qps", o.operatorQps, 1, 1_000_000),
      leaseTtlSeconds: int("lease-ttl", o.leaseTtl, 5, 3600),
      listPageSize: int("list-page-size", o.listPageSize, 1, 1_000_000),
      listPagesInFlight: int("list-pages-in-flight", o.listPagesInFlight, 0, 1_000_000),
      restartVariants: parseRestartVariants(o.restartVariants ?? DEFAULT_SIM.restartVariants.join(",")),
      resyncAgents: int("resync-agents", o.resyncAgents, 0, 1_000_000),
      callTimeoutMs: int("call-timeout-ms", o.callTimeoutMs, 100, 3_600_000),
      operatorAttempts: int("operator-attempts", o.operatorAttempts, 1, 100),
      convergeTimeoutMs: int("converge-timeout-ms", o.convergeTimeoutMs, 100, 86_400_000),
      joinTimeoutMs: int("join-timeout-ms", o.joinTimeoutMs, 100, 86_400_000),
      kvstore,
      log: o.quiet ? () => {} : (line) => io.err(line),
    };
    try {
      const report = await runSimulation(options);
      if (o.out) writeReportFiles(report, o.out);
      if (o.json) io.out(reportJson(report));
      else for (const line of reportLines(report)) io.out(line);
      // the report is written either way; a phase that failed or is incomplete makes the run fail (a failed operator write is a counted figure).
      // Through the program's exit code: main.ts sets process.exitCode from it after the action, so setting process.exitCode here was lost.
      if (report.failures.phases.length > 0 || report.failures.incomplete.length > 0) setExitCode(self, EXIT_FAILURE);
    } finally {
      cleanup();
    }
  });
}
