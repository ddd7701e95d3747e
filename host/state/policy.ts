/**
 * The policy section of the state file. Inputs: `endpoints` (id, labels,
 * addresses, ifindex, MAC), `policies` (the documents as imported) and
 * `identities` (numbers to keep). Written beside them for the datapath
 * writers and for people: each endpoint's `identity` and enforcement flags,
 * `ipcache` and `policyEntries` (by endpoint id). On load the written part is
 * recomputed from the inputs, never trusted; the result is checked against
 * the configured table sizes (policy.endpoints, policy.ipcache,
 * policy.entries) exactly as programming a datapath checks it, so a state
 * file that loads also programs.
 */
import { InvalidInputError } from "../errors.js";
import { LocalIdentityAllocator } from "../identity/allocator.js";
import { LabelSet } from "../identity/labels.js";
import { parseDocument, type PolicyDocument } from "../policy/document.js";
import { PolicyEngine } from "../policy/engine.js";
import { parseEndpoint } from "../policy/endpoint.js";
import type { ResolvedPolicyOptions } from "../policy/options.js";
import type { IpcacheRecord, PolicyEntry } from "../policy/types.js";
import { PolicyDatapathWriter, type WriteSummary } from "../policy/datapath-writer.js";
import type { PolicyTableStore } from "../policy/tables.js";
import { array, describe, fail, fields, object } from "../policy/validate.js";
import { CapacityPolicyTables } from "./capacity-tables.js";
import type { StateSection } from "./section.js";

/** Inputs first, then what membrane writes beside them (recomputed on load). */
export const POLICY_STATE_KEYS = ["endpoints", "policies", "identities", "ipcache", "policyEntries"] as const;

export interface PolicySection {
  /** The engine rebuilt from the inputs (empty when the file holds none). */
  engine: PolicyEngine;
  /** Whether the file holds endpoints or policies (else the datapath's policy tables stay empty). */
  present: boolean;
}

export const policySection: StateSection<PolicySection> = {
  name: "policy",
  keys: POLICY_STATE_KEYS,
  read: (section, { options }) => {
    const engine = engineFromState(section);
    checkFits(engine, options.policy);
    return { engine, present: section.endpoints !== undefined || section.policies !== undefined };
  },
};

/** Throws the writer's own capacity message when the engine's tables do not fit the configured sizes. */
export function checkFits(engine: PolicyEngine, sizes: ResolvedPolicyOptions): void {
  new PolicyDatapathWriter([new CapacityPolicyTables(sizes)]).applyChange(engine.snapshot());
}

/**
 * Programs fresh datapaths' policy tables with what the engine holds
 * (endpoints with their own addresses in the ipcache, CIDR prefixes, every
 * endpoint's entries), through one writer so they hold the same bytes.
 */
export function programPolicyTables(engine: PolicyEngine, targets: readonly PolicyTableStore[]): WriteSummary {
  return new PolicyDatapathWriter(targets).applyChange(engine.snapshot());
}

/** An engine rebuilt from the state file's inputs (validated completely; messages name the key path). */
export function engineFromState(parsed: unknown): PolicyEngine {
  const o = object(parsed, "state file");
  // Written output: recomputed below, so only its shape is checked.
  if (o.ipcache !== undefined) array(o.ipcache, "ipcache");
  if (o.policyEntries !== undefined) object(o.policyEntries, "policyEntries");
  const preferred = new Map<string, number>();
  (o.identities === undefined ? [] : array(o.identities, "identities")).forEach((v, i) => {
    const r = fields(v, `identities[${i}]`, ["id", "labels"]);
    if (typeof r.id !== "number" || !Number.isInteger(r.id) || r.id < 1) fail(`identities[${i}].id`, `expected a positive integer, got ${describe(r.id)}`);
    preferred.set(identityLabels(r.labels, `identities[${i}].labels`).id, r.id);
  });
  const endpoints = (o.endpoints === undefined ? [] : array(o.endpoints, "endpoints")).map((v, i) => parseEndpoint(v, `endpoints[${i}]`));
  const docs = o.policies === undefined ? [] : policyDocuments(array(o.policies, "policies"));
  const engine = new PolicyEngine({ allocator: new LocalIdentityAllocator(preferred) });
  const ids = new Map<number, number>();
  endpoints.forEach((e, i) => {
    const first = ids.get(e.id);
    if (first !== undefined) throw new InvalidInputError(`endpoints[${i}].id: endpoint id ${e.id} is already endpoints[${first}]`);
    ids.set(e.id, i);
    try {
      engine.upsertEndpoint(e);
    } catch (err) {
      if (err instanceof InvalidInputError) throw new InvalidInputError(`endpoints[${i}]: ${err.message}`, { cause: err });
      throw err;
    }
  });
  try {
    engine.importPolicies(docs);
  } catch (err) {
    if (err instanceof InvalidInputError) throw new InvalidInputError(`policies: ${err.message}`, { cause: err });
    throw err;
  }
  return engine;
}

/** Each stored document, its errors under `policies[i]`; a name given twice is refused. */
function policyDocuments(list: unknown[]): PolicyDocument[] {
  const seen = new Map<string, number>();
  return list.map((v, i) => {
    const doc = parseDocument(v, `policies[${i}]`);
    const first = seen.get(doc.name);
    if (first !== undefined) fail(`policies[${i}]`, `policy ${doc.name} is already policies[${first}]`);
    seen.set(doc.name, i);
    return doc;
  });
}

/** Stored identity labels keep their sources (reserved:, cidr:), which endpoint labels may not use. */
function identityLabels(v: unknown, path: string): LabelSet {
  const list = array(v, path);
  return LabelSet.of(list.map((s, i) => {
    if (typeof s !== "string") fail(`${path}[${i}]`, `expected a string, got ${describe(s)}`);
    const colon = s.indexOf(":");
    const eq = s.indexOf("=", colon + 1);
    const source = colon > 0 ? s.slice(0, colon) : "k8s";
    // cidr keys hold ":" (IPv6) and never "=": everything after the source is the key
    if (source === "cidr") return { source, key: s.slice(colon + 1), value: "" };
    return { source, key: eq < 0 ? s.slice(colon + 1) : s.slice(colon + 1, eq), value: eq < 0 ? "" : s.slice(eq + 1) };
  }));
}

export interface PolicyState {
  endpoints: unknown[];
  policies: unknown[];
  identities: { id: number; labels: string[] }[];
  ipcache: IpcacheRecord[];
  policyEntries: Record<string, PolicyEntry[]>;
}

/** The policy section as the engine holds it: what a write puts in the file. */
export function policyState(engine: PolicyEngine): PolicyState {
  const policy: Record<string, PolicyEntry[]> = {};
  for (const { record } of engine.listEndpoints()) policy[String(record.id)] = engine.policyEntries(record.id);
  return {
    endpoints: engine.listEndpoints().map(({ input, record }) => ({ ...record, labels: input.labels.toStrings() })),
    policies: engine.listPolicies().map((p) => p.source),
    identities: engine.allocator.list().filter((i) => i.kind !== "reserved").map((i) => ({ id: i.id, labels: i.labels.toStrings() })),
    ipcache: engine.ipcache(),
    policyEntries: policy,
  };
}
