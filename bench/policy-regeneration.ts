/**
 * Policy regeneration: what adding one rule costs the incremental engine
 * against a full recompute of every endpoint (`npm run bench:policy`).
 *
 * Node: 1,000 endpoints with distinct label sets (app=svc-N), in 100 groups of
 * 10 (group=gN), 5 tiers and 7 zones; 500 CiliumNetworkPolicy rules, rule k
 * selecting group k%100 (so 5 rules per endpoint) and admitting ingress from
 * tier k%5 (200 endpoints) and from one app on a TCP port, egress to zone k%7
 * on any port; every 10th rule also names a /16 CIDR, every 25th denies
 * egress to one app. The change: one rule selecting group g42 (10 endpoints),
 * ingress from tier t1 on 9999/TCP.
 *
 * Timed: `importPolicies([rule])` in an incremental engine and in an engine in
 * "full" mode (every change recomputes every endpoint from scratch: rule
 * selection and peer selections evaluated afresh, as before Cilium 1.5). The
 * rule is deleted again after each iteration, untimed (tinybench afterEach).
 * Both engines write the same diff (checked before timing); "written if
 * rewritten" is what a writer that replaces whole tables would write.
 */
import { Bench } from "tinybench";
import { parseDocuments, type PolicyDocument } from "../host/policy/document.js";
import { PolicyEngine, type EngineChange, type RegenerationMode } from "../host/policy/engine.js";
import { endpointLabels } from "../host/policy/endpoint.js";
import { num, printTable } from "./report.js";

const ENDPOINTS = 1000;
const RULES = 500;
const GROUP = 10;

function endpointInput(i: number) {
  return {
    id: i + 1,
    labels: endpointLabels({ app: `svc-${i}`, group: `g${Math.floor(i / GROUP)}`, tier: `t${i % 5}`, zone: `z${i % 7}` }, "labels"),
    ipv4: `10.${200 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`,
    ifindex: i + 1,
    mac: "02:00:00:00:00:01",
  };
}

function rule(k: number): unknown {
  const egress: unknown[] = [{ toEndpoints: [{ matchLabels: { zone: `z${k % 7}` } }] }];
  if (k % 10 === 0) egress.push({ toCIDR: [`172.${16 + (k % 16)}.${k % 256}.0/24`], toPorts: [{ ports: [{ port: "443", protocol: "TCP" }] }] });
  return {
    apiVersion: "cilium.io/v2", kind: "CiliumNetworkPolicy", metadata: { name: `rule-${k}` },
    spec: {
      endpointSelector: { matchLabels: { group: `g${k % 100}` } },
      ingress: [
        { fromEndpoints: [{ matchLabels: { tier: `t${k % 5}` } }], toPorts: [{ ports: [{ port: String(8000 + (k % 50)), protocol: "TCP" }] }] },
        { fromEndpoints: [{ matchLabels: { app: `svc-${(k * 7) % ENDPOINTS}` } }] },
      ],
      egress,
      ...(k % 25 === 0 ? { egressDeny: [{ toEndpoints: [{ matchLabels: { app: `svc-${(k * 13) % ENDPOINTS}` } }] }] } : {}),
    },
  };
}

const NEW_RULE: PolicyDocument = parseDocuments({
  apiVersion: "cilium.io/v2", kind: "CiliumNetworkPolicy", metadata: { name: "new-rule" },
  spec: { endpointSelector: { matchLabels: { group: "g42" } }, ingress: [{ fromEndpoints: [{ matchLabels: { tier: "t1" } }], toPorts: [{ ports: [{ port: "9999", protocol: "TCP" }] }] }] },
})[0]!;

function node(mode: RegenerationMode): PolicyEngine {
  const engine = new PolicyEngine({ mode });
  for (let i = 0; i < ENDPOINTS; i++) engine.upsertEndpoint(endpointInput(i));
  engine.importPolicies(parseDocuments(Array.from({ length: RULES }, (_, k) => rule(k))));
  return engine;
}

function written(c: EngineChange): number {
  let n = 0;
  for (const d of c.policy.changes.values()) n += d.add.length + d.remove.length;
  return n;
}

export async function runPolicyRegeneration(): Promise<unknown> {
  const setupStart = performance.now();
  const engines = { incremental: node("incremental"), full: node("full") };
  const setupMs = performance.now() - setupStart;
  const totalEntries = engines.incremental.listEndpoints().reduce((n, e) => n + engines.incremental.policyEntries(e.record.id).length, 0);

  // What each does, checked before anything is timed.
  const first = { incremental: engines.incremental.importPolicies([NEW_RULE]), full: engines.full.importPolicies([NEW_RULE]) };
  const selected = engines.incremental.listEndpoints().filter((e) => NEW_RULE.rules[0]!.subject.matches(e.input.labels)).map((e) => e.record.id);
  if (JSON.stringify(first.incremental.policy.recomputed) !== JSON.stringify(selected) || selected.length !== GROUP) {
    throw new Error(`incremental engine recomputed [${first.incremental.policy.recomputed}], the rule selects [${selected}]`);
  }
  if (JSON.stringify([...first.incremental.policy.changes]) !== JSON.stringify([...first.full.policy.changes])) {
    throw new Error("incremental and full recompute wrote different entries");
  }
  for (const e of Object.values(engines)) e.deletePolicies([NEW_RULE.name]);
  const tablesAfter = engines.full.listEndpoints().reduce((n, e) => n + engines.full.policyEntries(e.record.id).length, 0) + (first.full.policy.changes.get(selected[0]!)?.add.length ?? 0) * selected.length;

  const bench = new Bench({ time: 2000, warmupTime: 200, iterations: 5, warmupIterations: 1, timestampProvider: "hrtimeNow", throws: true });
  for (const [name, engine] of Object.entries(engines)) {
    bench.add(name, () => { engine.importPolicies([NEW_RULE]); }, { async: false, afterEach: () => { engine.deletePolicies([NEW_RULE.name]); } });
  }
  await bench.run();

  const stat = (name: string) => bench.tasks.find((t) => t.name === name)!.result as unknown as { latency: { mean: number; p50: number; rme: number; samplesCount: number } };
  const inc = stat("incremental").latency, full = stat("full").latency;
  const rows = (["incremental", "full"] as const).map((name) => {
    const c = first[name], l = name === "incremental" ? inc : full;
    return {
      engine: name === "incremental" ? "incremental" : "full recompute",
      "endpoints recomputed": c.policy.recomputed.length,
      "entries computed": num(c.entriesComputed),
      "entries written (diff)": num(written(c)),
      "written if tables rewritten": num(name === "incremental" ? c.entriesComputed : tablesAfter),
      "mean ms": num(l.mean, 3),
      "p50 ms": num(l.p50, 3),
      "±%": num(l.rme, 1),
      samples: l.samplesCount,
    };
  });
  printTable(`Policy regeneration: add 1 rule selecting ${GROUP} of ${ENDPOINTS} endpoints (${RULES} rules, ${num(totalEntries)} entries on the node)`, rows, [
    `full / incremental: ${num(first.full.policy.recomputed.length / first.incremental.policy.recomputed.length, 0)}x endpoints recomputed, ${num(first.full.entriesComputed / first.incremental.entriesComputed, 0)}x entries computed, ${num(full.mean / inc.mean, 1)}x time (mean), ${num(full.p50 / inc.p50, 1)}x (p50)`,
    `both wrote the same ${written(first.incremental)} entries to the same ${first.incremental.policy.changes.size} endpoints (checked); the incremental engine recomputed exactly the endpoints the rule selects`,
    `node built in ${num(setupMs, 0)} ms (both engines); times are importPolicies() only, the rule is deleted after each iteration outside the timed window`,
  ]);
  return {
    endpoints: ENDPOINTS, rules: RULES, entriesOnNode: totalEntries,
    incremental: { recomputed: first.incremental.policy.recomputed.length, entriesComputed: first.incremental.entriesComputed, written: written(first.incremental), meanMs: inc.mean, p50Ms: inc.p50 },
    full: { recomputed: first.full.policy.recomputed.length, entriesComputed: first.full.entriesComputed, written: written(first.full), rewritten: tablesAfter, meanMs: full.mean, p50Ms: full.p50 },
    ratio: { time: full.mean / inc.mean, recomputed: first.full.policy.recomputed.length / first.incremental.policy.recomputed.length },
  };
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  runPolicyRegeneration().catch((err) => { console.error(err); process.exitCode = 1; });
}
