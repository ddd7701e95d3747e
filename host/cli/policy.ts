/**
 * `membrane policy ...`, `membrane identity list`, `membrane endpoint ...`:
 * the policy engine on the replay state file (`--config`). A command that
 * changes something loads the file, validates the change completely, and
 * writes the file back only when everything succeeded.
 */
import { parseArgs } from "node:util";
import { readFileSync } from "node:fs";
import { InvalidInputError } from "../errors.js";
import { parsePolicyText } from "../policy/document.js";
import type { EngineChange } from "../policy/engine.js";
import { parseEndpoint } from "../policy/endpoint.js";
import { loadEngine, saveEngine } from "../policy/state.js";
import { protoName, trace, traceText } from "../policy/trace.js";
import type { Selector } from "../policy/selector.js";
import { EXIT_OK, type Output } from "../format/output.js";
import { renderTable, toJson } from "../format/table.js";

export const POLICY_USAGE = `membrane policy / identity / endpoint: the policy engine on a state file (JSON, as replay --config)

  membrane policy import <file> --config <state>     add or replace the policies in <file> (YAML or JSON: documents, a list, or a List)
  membrane policy get [--json] --config <state>      the policies and what they select
  membrane policy delete <name>... | --all --config <state>
  membrane policy trace --src <labels|ip> --dst <labels|ip> --dport N/proto [--json] --config <state>
  membrane identity list [--json] --config <state>
  membrane endpoint list [--json] --config <state>   endpoints, their identity, enforcement and table size
  membrane endpoint add <id> --labels k=v,... [--ipv4 A] [--ipv6 A] [--ifindex N] [--mac M] --config <state>
  membrane endpoint delete <id> --config <state>
`;

function configPath(v: string | undefined, what: string): string {
  if (!v) throw new InvalidInputError(`${what}: --config <state file> is required (the file the endpoints and policies are kept in)`);
  return v;
}

function changeSummary(c: EngineChange): string {
  let add = 0, remove = 0;
  for (const d of c.policy.changes.values()) { add += d.add.length; remove += d.remove.length; }
  return `endpoints recomputed: ${c.policy.recomputed.length} [${c.policy.recomputed.join(",")}]; policy entries +${add} -${remove}; ipcache +${c.ipcache.upsert.length} -${c.ipcache.remove.length}`;
}

export async function policyCommand(args: string[], io: Output): Promise<number> {
  const [verb, ...rest] = args;
  if (!verb || verb === "-h" || verb === "--help") { io.out(POLICY_USAGE); return EXIT_OK; }
  if (verb === "import") {
    const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { config: { type: "string" } } });
    if (positionals.length !== 1) throw new InvalidInputError(`policy import: expected one policy file, got ${positionals.length}`);
    const path = configPath(values.config, "policy import");
    let text: string;
    try { text = readFileSync(positionals[0]!, "utf8"); } catch (err) { throw new InvalidInputError(`read ${positionals[0]}: ${(err as Error).message}`); }
    const docs = parsePolicyText(text, positionals[0]!);
    const { raw, engine } = loadEngine(path, true);
    const change = engine.importPolicies(docs);
    saveEngine(path, raw, engine);
    io.out(`imported ${docs.map((d) => `${d.kind} ${d.name}`).join(", ")}`);
    io.out(changeSummary(change));
    return EXIT_OK;
  }
  if (verb === "get") {
    const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { config: { type: "string" }, json: { type: "boolean", default: false } } });
    if (positionals.length) throw new InvalidInputError(`policy get: unexpected argument "${positionals[0]}"`);
    const { engine } = loadEngine(configPath(values.config, "policy get"));
    const policies = engine.listPolicies();
    if (values.json) { io.out(toJson(policies.map((p) => p.source))); return EXIT_OK; }
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
    return EXIT_OK;
  }
  if (verb === "delete") {
    const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { config: { type: "string" }, all: { type: "boolean", default: false } } });
    if (values.all === (positionals.length > 0)) throw new InvalidInputError("policy delete: give policy names or --all (not both)");
    const path = configPath(values.config, "policy delete");
    const { raw, engine } = loadEngine(path);
    const change = values.all ? engine.deleteAllPolicies() : engine.deletePolicies(positionals);
    saveEngine(path, raw, engine);
    io.out(changeSummary(change));
    return EXIT_OK;
  }
  if (verb === "trace") {
    const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { config: { type: "string" }, src: { type: "string" }, dst: { type: "string" }, dport: { type: "string" }, json: { type: "boolean", default: false } } });
    if (positionals.length) throw new InvalidInputError(`policy trace: unexpected argument "${positionals[0]}"`);
    for (const k of ["src", "dst", "dport"] as const) if (!values[k]) throw new InvalidInputError(`policy trace: --${k} is required`);
    const { engine } = loadEngine(configPath(values.config, "policy trace"));
    const t = trace(engine, values.src!, values.dst!, values.dport!);
    if (values.json) {
      const party = (p: typeof t.src) => ({ given: p.given, identity: p.number ?? null, endpoint: p.endpoint ?? null, labels: p.identity.labels.toStrings() });
      io.out(toJson({ ...t, src: party(t.src), dst: party(t.dst), proto: protoName(t.proto) }));
    } else for (const l of traceText(t)) io.out(l);
    return EXIT_OK;
  }
  throw new InvalidInputError(`policy: unknown command "${verb}" (import, get, delete, trace)`);
}

export async function identityCommand(args: string[], io: Output): Promise<number> {
  const [verb, ...rest] = args;
  if (verb !== "list") throw new InvalidInputError(`identity: expected "identity list", got "identity ${verb ?? ""}"`);
  const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { config: { type: "string" }, json: { type: "boolean", default: false } } });
  if (positionals.length) throw new InvalidInputError(`identity list: unexpected argument "${positionals[0]}"`);
  const { engine } = loadEngine(configPath(values.config, "identity list"));
  const rows = engine.allocator.list().map((i) => ({ id: i.id, kind: i.kind, refs: i.kind === "reserved" ? null : engine.allocator.references(i.id), labels: i.labels.toStrings() }));
  if (values.json) { io.out(toJson(rows)); return EXIT_OK; }
  io.out(renderTable([
    { header: "ID", value: (r) => r.id },
    { header: "KIND", value: (r) => r.kind },
    { header: "REFS", value: (r) => (r.refs === null ? "-" : String(r.refs)), right: true },
    { header: "LABELS", value: (r) => (r.kind === "cidr" ? r.labels[0]! : r.labels.join(",")) },
  ], rows));
  return EXIT_OK;
}

export async function endpointCommand(args: string[], io: Output): Promise<number> {
  const [verb, ...rest] = args;
  const { values, positionals } = parseArgs({
    args: rest, allowPositionals: true,
    options: { config: { type: "string" }, json: { type: "boolean", default: false }, labels: { type: "string" }, ipv4: { type: "string" }, ipv6: { type: "string" }, ifindex: { type: "string" }, mac: { type: "string" } },
  });
  if (verb === "list") {
    if (positionals.length) throw new InvalidInputError(`endpoint list: unexpected argument "${positionals[0]}"`);
    const { engine } = loadEngine(configPath(values.config, "endpoint list"));
    const rows = engine.listEndpoints().map(({ input, record }) => ({ ...record, labels: input.labels.toStrings(), entries: engine.policyEntries(record.id).length }));
    if (values.json) { io.out(toJson(rows)); return EXIT_OK; }
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
    return EXIT_OK;
  }
  if (verb === "add" || verb === "delete") {
    if (positionals.length !== 1 || !/^\d+$/.test(positionals[0]!)) throw new InvalidInputError(`endpoint ${verb}: expected one numeric endpoint id`);
    const id = Number(positionals[0]);
    const path = configPath(values.config, `endpoint ${verb}`);
    const { raw, engine } = loadEngine(path, verb === "add");
    let change: EngineChange;
    if (verb === "add") {
      if (values.labels === undefined) throw new InvalidInputError("endpoint add: --labels is required");
      const ifindex = values.ifindex === undefined ? undefined : Number(values.ifindex);
      const input = parseEndpoint({ id, labels: values.labels, ipv4: values.ipv4, ipv6: values.ipv6, ifindex, mac: values.mac }, "endpoint");
      change = engine.upsertEndpoint(input);
    } else change = engine.removeEndpoint(id);
    saveEngine(path, raw, engine);
    io.out(changeSummary(change));
    return EXIT_OK;
  }
  throw new InvalidInputError(`endpoint: unknown command "${verb ?? ""}" (list, add, delete)`);
}
