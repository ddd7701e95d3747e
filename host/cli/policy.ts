/**
 * `membrane policy ...`, `membrane identity list`, `membrane endpoint ...`:
 * the policy engine on the replay state file (`--config`). A command that
 * changes something loads the file, validates the change completely, and
 * writes the file back only when everything succeeded.
 */
import { askAgentList } from "./cluster.js";
import { Command } from "commander";
import { readFileSync } from "node:fs";
import { InvalidInputError } from "../errors.js";
import { parsePolicyText } from "../policy/document.js";
import type { EngineChange } from "../policy/engine.js";
import { loadState } from "../state/file.js";
import { addEndpoint, deleteEndpoint, deletePolicies, importPolicies } from "../state/edits.js";
import { protoName, trace, traceText } from "../policy/trace.js";
import type { Selector } from "../policy/selector.js";
import type { Output } from "../format/output.js";
import { example, integerArg, jsonOption, outputOf, refuseOtherVerbs } from "./command.js";
import { renderTable, toJson } from "../format/table.js";

function configPath(v: string | undefined, what: string): string {
  if (!v) throw new InvalidInputError(`${what}: --config <state file> is required (the file the endpoints and policies are kept in)`);
  return v;
}

function changeSummary(c: EngineChange): string {
  let add = 0, remove = 0;
  for (const d of c.policy.changes.values()) { add += d.add.length; remove += d.remove.length; }
  return `endpoints recomputed: ${c.policy.recomputed.length} [${c.policy.recomputed.join(",")}]; policy entries +${add} -${remove}; ipcache +${c.ipcache.upsert.length} -${c.ipcache.remove.length}`;
}

async function policyImport(file: string | undefined, values: { config?: string }, io: Output): Promise<void> {
  if (file === undefined) throw new InvalidInputError(`policy import: expected one policy file, got 0`);
  const positionals = [file];
  const path = configPath(values.config, "policy import");
  let text: string;
  try { text = readFileSync(positionals[0]!, "utf8"); } catch (err) { throw new InvalidInputError(`read ${positionals[0]}: ${(err as Error).message}`); }
  const docs = parsePolicyText(text, positionals[0]!);
  const change = importPolicies(path, docs);
  io.out(`imported ${docs.map((d) => `${d.kind} ${d.name}`).join(", ")}`);
  io.out(changeSummary(change));
}

async function policyGet(values: { config?: string; json: boolean }, io: Output): Promise<void> {
  const { engine } = loadState(configPath(values.config, "policy get"));
  const policies = engine.listPolicies();
  if (values.json) { io.out(toJson(policies.map((p) => p.source))); return; }
  const rows = policies.flatMap((p) => p.rules.map((r) => ({ p, r })));
  const selects = (sel: Selector) => engine.listEndpoints().filter((e) => sel.matches(e.input.labels)).map((e) => e.record.id);
  io.out(renderTable([
    { header: "NAME", value: (x) => x.p.name },
    { header: "KIND", value: (x) => x.p.kind },
    { header: "RULE", value: (x) => x.r.path },
    { header: "SELECTS", value: (x) => x.r.subject.key },
    { header: "ENDPOINTS", value: (x) => selects(x.r.subject).join(",") || "-" },
    { header: "ENFORCES", value: (x) => [x.r.enforces.ingress ? "ingress" : "", x.r.enforces.egress ? "egress" : ""].filter(Boolean).join(",") || "-" },
    { header: "SECTIONS", value: (x) => x.r.sections.length, right: true },
  ], rows));
}

async function policyDelete(positionals: string[], values: { config?: string; all: boolean }, io: Output): Promise<void> {
  if (values.all === (positionals.length > 0)) throw new InvalidInputError("policy delete: give policy names or --all (not both)");
  const path = configPath(values.config, "policy delete");
  const change = deletePolicies(path, values.all ? "all" : positionals);
  io.out(changeSummary(change));
}

async function policyTrace(values: { config?: string; src?: string; dst?: string; dport?: string; json: boolean }, io: Output): Promise<void> {
  for (const k of ["src", "dst", "dport"] as const) if (!values[k]) throw new InvalidInputError(`policy trace: --${k} is required`);
  const { engine } = loadState(configPath(values.config, "policy trace"));
  const t = trace(engine, values.src!, values.dst!, values.dport!);
  if (values.json) {
    const party = (p: typeof t.src) => ({ given: p.given, identity: p.number ?? null, endpoint: p.endpoint ?? null, labels: p.identity.labels.toStrings() });
    io.out(toJson({ ...t, src: party(t.src), dst: party(t.dst), proto: protoName(t.proto) }));
  } else for (const l of traceText(t)) io.out(l);
}

async function identityList(values: { config?: string; socket?: string; json: boolean }, io: Output): Promise<void> {
  if (values.config === undefined) return askAgentList("identities", values, io); // no state file: the running agent's
  const { engine } = loadState(configPath(values.config, "identity list"));
  const rows = engine.allocator.list().map((i) => ({ id: i.id, kind: i.kind, refs: i.kind === "reserved" ? null : engine.allocator.references(i.id), labels: i.labels.toStrings() }));
  if (values.json) { io.out(toJson(rows)); return; }
  io.out(renderTable([
    { header: "ID", value: (r) => r.id },
    { header: "KIND", value: (r) => r.kind },
    { header: "REFS", value: (r) => (r.refs === null ? "-" : String(r.refs)), right: true },
    { header: "LABELS", value: (r) => (r.kind === "cidr" ? r.labels[0]! : r.labels.join(",")) },
  ], rows));
}

async function endpointList(values: { config?: string; socket?: string; json: boolean }, io: Output): Promise<void> {
  if (values.config === undefined) return askAgentList("endpoints", values, io); // no state file: the running agent's
  const { engine } = loadState(configPath(values.config, "endpoint list"));
  const rows = engine.listEndpoints().map(({ input, record }) => ({ ...record, labels: input.labels.toStrings(), entries: engine.policyEntries(record.id).length }));
  if (values.json) { io.out(toJson(rows)); return; }
  io.out(renderTable([
    { header: "ID", value: (r) => r.id },
    { header: "IDENTITY", value: (r) => r.identity },
    { header: "IPV4", value: (r) => r.ipv4 ?? "-" },
    { header: "IPV6", value: (r) => r.ipv6 ?? "-" },
    { header: "INGRESS", value: (r) => (r.enforceIngress ? "enforced" : "allow-all") },
    { header: "EGRESS", value: (r) => (r.enforceEgress ? "enforced" : "allow-all") },
    { header: "ENTRIES", value: (r) => r.entries },
    { header: "LABELS", value: (r) => r.labels.join(",") },
  ], rows));
}

interface EndpointFlags { config?: string; labels?: string; ipv4?: string; ipv6?: string; ifindex?: string; mac?: string; replace?: boolean }

async function endpointChange(verb: "add" | "delete", positionals: string[], values: EndpointFlags, io: Output): Promise<void> {
  if (positionals.length !== 1 || !/^\d+$/.test(positionals[0]!)) throw new InvalidInputError(`endpoint ${verb}: expected one numeric endpoint id`);
  const id = Number(positionals[0]);
  // Checked before the state file is read: a bad flag names itself and what it expected.
  const ifindex = integerArg("ifindex", values.ifindex, 1, 0x7fffffff, "an interface index");
  const path = configPath(values.config, `endpoint ${verb}`);
  let change: EngineChange;
  if (verb === "add") {
    if (values.labels === undefined) throw new InvalidInputError("endpoint add: --labels is required");
    change = addEndpoint(path, { id, labels: values.labels, ipv4: values.ipv4, ipv6: values.ipv6, ifindex, mac: values.mac }, { replace: values.replace ?? false });
  } else change = deleteEndpoint(path, id);
  io.out(changeSummary(change));
}

const AGENT_SOCKET_HELP = "without --config: ask the agent running on this socket (default /run/membrane/agent.sock)";
const CONFIG_HELP = "the state file (JSON, as replay --config) the endpoints and policies are kept in";

/** A group's fallback: no verb prints its help (exit 0), an unknown verb is refused with `message`. */
function helpOrRefuse(group: Command, message: (verb: string) => string): void {
  group.argument("[verb]").allowExcessArguments(true).action((verb: string | undefined, _o: unknown, self: Command) => {
    if (verb === undefined) { self.outputHelp(); return; }
    throw new InvalidInputError(message(verb));
  });
}

/** `membrane policy import|get|delete|trace` */
export function registerPolicy(program: Command): void {
  const policy = program.command("policy").usage("<command> [options]")
    .description("the policy engine on a state file: import, list, delete and trace CiliumNetworkPolicy / NetworkPolicy documents");
  helpOrRefuse(policy, (verb) => `policy: unknown command "${verb}" (import, get, delete, trace)`);
  example(policy, "membrane policy import db.yaml --config state.json", "membrane policy trace --src app=web --dst app=db --dport 5432/tcp --config state.json");

  const imp = policy.command("import").description("add or replace the policies in <file> (YAML or JSON: documents, a list, or a List)")
    .argument("[file]", "the policy file").usage("<file> --config <state>")
    .option("--config <state>", CONFIG_HELP);
  example(imp, "membrane policy import db.yaml --config state.json");
  imp.action((file: string | undefined, o: { config?: string }, self: Command) => policyImport(file, o, outputOf(self)));

  const get = policy.command("get").description("the policies, their rules and the endpoints each selects")
    .option("--config <state>", CONFIG_HELP);
  jsonOption(get, "the policies' documents as JSON");
  example(get, "membrane policy get --config state.json", "membrane policy get --config state.json --json");
  get.action((o: { config?: string; json: boolean }, self: Command) => policyGet(o, outputOf(self)));

  const del = policy.command("delete").description("delete policies by name (namespace/name), or all of them")
    .argument("[name...]", "policy names").usage("<name>... | --all --config <state>")
    .option("--all", "delete every policy", false)
    .option("--config <state>", CONFIG_HELP);
  example(del, "membrane policy delete default/db --config state.json", "membrane policy delete --all --config state.json");
  del.action((names: string[], o: { config?: string; all: boolean }, self: Command) => policyDelete(names, o, outputOf(self)));

  const tr = policy.command("trace").description("which rules allow or deny a flow, at the source's egress and the destination's ingress")
    .option("--src <labels|ip>", "the source: labels (k=v,...) or an address")
    .option("--dst <labels|ip>", "the destination: labels (k=v,...) or an address")
    .option("--dport <port/proto>", "destination port and protocol, e.g. 80/tcp")
    .option("--config <state>", CONFIG_HELP);
  jsonOption(tr, "the trace as one JSON object");
  example(tr, "membrane policy trace --src app=web --dst 10.0.0.2 --dport 5432/tcp --config state.json");
  tr.action((o: { config?: string; src?: string; dst?: string; dport?: string; json: boolean }, self: Command) => policyTrace(o, outputOf(self)));
}

/** `membrane identity list` */
export function registerIdentity(program: Command): void {
  const identity = program.command("identity").description("the security identities of a state file's endpoints and CIDR rules");
  refuseOtherVerbs(identity, (got) => `identity: expected "identity list", got "identity ${got[0] ?? ""}"`);
  example(identity, "membrane identity list --config state.json");
  const list = identity.command("list").description("identities: id, kind (reserved, endpoint, cidr), references, labels")
    .option("--config <state>", CONFIG_HELP)
    .option("--socket <path>", AGENT_SOCKET_HELP);
  jsonOption(list, "the identities as a JSON list");
  example(list, "membrane identity list --config state.json", "membrane identity list --config state.json --json");
  list.action((o: { config?: string; socket?: string; json: boolean }, self: Command) => identityList(o, outputOf(self)));
}

/** `membrane endpoint list|add|delete` */
export function registerEndpoint(program: Command): void {
  const endpoint = program.command("endpoint").description("the local endpoints of a state file");
  refuseOtherVerbs(endpoint, (got) => `endpoint: unknown command "${got[0] ?? ""}" (list, add, delete)`);
  example(endpoint, "membrane endpoint add 1 --labels app=web --ipv4 10.0.0.1 --config state.json");

  const list = endpoint.command("list").description("endpoints, their identity, enforcement and policy table size")
    .option("--config <state>", CONFIG_HELP)
    .option("--socket <path>", AGENT_SOCKET_HELP);
  jsonOption(list, "the endpoints as a JSON list");
  example(list, "membrane endpoint list --config state.json", "membrane endpoint list --config state.json --json");
  list.action((o: { config?: string; socket?: string; json: boolean }, self: Command) => endpointList(o, outputOf(self)));

  const add = endpoint.command("add").description("add an endpoint; its identity comes from its labels (an id the file holds already is refused unless --replace)")
    .argument("[id...]", "the endpoint id, a number").usage("<id> --labels k=v,... [options] --config <state>")
    .option("--labels <k=v,...>", "the endpoint's labels (required)")
    .option("--ipv4 <address>", "its IPv4 address")
    .option("--ipv6 <address>", "its IPv6 address")
    .option("--ifindex <n>", "its interface index")
    .option("--mac <address>", "its MAC address")
    .option("--replace", "replace an endpoint the file holds already", false)
    .option("--config <state>", CONFIG_HELP);
  example(add, "membrane endpoint add 2 --labels app=db,tier=data --ipv4 10.0.0.2 --ipv6 fd00::2 --config state.json");
  add.action((ids: string[], o: EndpointFlags, self: Command) => endpointChange("add", ids, o, outputOf(self)));

  const del = endpoint.command("delete").description("remove an endpoint and its policy entries")
    .argument("[id...]", "the endpoint id").usage("<id> --config <state>")
    .option("--config <state>", CONFIG_HELP);
  example(del, "membrane endpoint delete 2 --config state.json");
  del.action((ids: string[], o: EndpointFlags, self: Command) => endpointChange("delete", ids, o, outputOf(self)));
}
