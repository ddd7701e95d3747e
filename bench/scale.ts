/**
 * Scale (issue 16): `membrane sim` at full size by default (5,000 nodes,
 * 100,000 pods, 20,000 services, 2,000 label sets) against a private etcd,
 * with every 1.5 mechanism on and off in the same run. Writes
 * bench/results/sim-report.{txt,json} and the SVG plots, and prints NOT MET
 * for a goal not met:
 * - every agent converges on every churned pod;
 * - full agents' memory <= 2 KiB per cluster pod (Cilium 1.5: ~10.5 KiB);
 * - slim records deliver >= 10x fewer bytes per pod change than full objects.
 *
 *   npm run bench:scale [-- --nodes 1000 --pods 20000 --services 4000 --label-sets 400]
 *
 * The machine is shared: the report carries wall time, peak memory, etcd's
 * memory and the load average; compare on/off figures of the same run only.
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DEFAULT_SIM, runSimulation } from "../host/sim/simulation.js";
import { reportLines, writeReportFiles } from "../host/sim/report.js";

const FULL_SIZE = { nodes: 5000, pods: 100_000, services: 20_000, labelSets: 2000, joinNodes: 500, churnSeconds: 30, podRate: 20, apiserverQps: 200, operatorQps: 500 };

function argsToOptions(argv: string[]): Record<string, number | string | string[]> {
  const out: Record<string, number | string | string[]> = {};
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i]!.replace(/^--/, "").replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
    const value = argv[i + 1];
    if (!(name in DEFAULT_SIM) || value === undefined) throw new Error(`bench:scale: unknown or incomplete option ${argv[i]}`);
    out[name] = name === "kvstore" ? value : name === "restartVariants" ? (value === "none" ? [] : value.split(",")) : Number(value);
  }
  return out;
}

const options = { ...DEFAULT_SIM, agentsPerClient: 25, ...FULL_SIZE, ...argsToOptions(process.argv.slice(2)), log: (l: string) => console.error(l) };
const report = await runSimulation(options);
const dir = join(fileURLToPath(new URL(".", import.meta.url)), "..", "..", "bench", "results");
writeReportFiles(report, dir);
for (const line of reportLines(report)) console.log(line);
const slim = report.mechanisms.find((m) => m.mechanism === "slim records");
const goals = [
  { name: "every agent converged on every churned pod", met: report.kinds.every((k) => k.notConverged === 0) },
  { name: `full agents' memory <= ${report.fullAgentMemory.goalBytes} B per pod (${Math.round(report.fullAgentMemory.perAgentPerPodBytes)})`, met: report.fullAgentMemory.measured && report.fullAgentMemory.perAgentPerPodBytes <= report.fullAgentMemory.goalBytes },
  { name: `slim records >= 10x fewer bytes (${slim ? (slim.off / slim.on).toFixed(1) : "-"}x)`, met: !!slim && slim.off / slim.on >= 10 },
];
console.log("");
for (const g of goals) console.log(`${g.met ? "met" : "NOT MET"}: ${g.name}`);
console.log(`plots and report: ${dir}/sim-*.svg, sim-report.txt, sim-report.json`);
