/**
 * The policy part of the replay state file (`--config`). Inputs: `endpoints`
 * (id, labels, addresses, ifindex, MAC), `policies` (the documents as
 * imported) and `identities` (numbers to keep). Written beside them for the
 * datapath writers and for people: each endpoint's `identity` and enforcement
 * flags, `ipcache` and `policyEntries` (by endpoint id). On load the written
 * part is recomputed from the inputs, never trusted.
 */
import { renameSync, writeFileSync } from "node:fs";
import { InvalidInputError } from "../errors.js";
import { LocalIdentityAllocator } from "../identity/allocator.js";
import { LabelSet } from "../identity/labels.js";
import { parseDocuments } from "../policy/document.js";
import { PolicyEngine } from "../policy/engine.js";
import { parseEndpoint } from "../policy/endpoint.js";
import type { IpcacheRecord, PolicyEntry } from "../policy/types.js";
import { PolicyDatapathWriter, type WriteSummary } from "../policy/datapath-writer.js";
import type { PolicyTableStore } from "../policy/tables.js";
import { array, describe, fail, fields } from "../policy/validate.js";
import { readStateObject } from "./read.js";

export const POLICY_STATE_KEYS = ["endpoints", "policies", "identities", "ipcache", "policyEntries"] as const;

/**
 * The state file without the policy engine's keys: what the datapath
 * configuration validator reads. `policy` is the datapath's (table sizes,
 * DatapathOptions.policy); files from before `policyEntries` held the entries
 * there, keyed by endpoint id: that form is recomputed output and is dropped.
 */
export function withoutPolicyState(parsed: unknown): unknown {
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return parsed;
  const rest: Record<string, unknown> = { ...(parsed as Record<string, unknown>) };
  for (const k of POLICY_STATE_KEYS) delete rest[k];
  if (isOldEntries(rest.policy)) delete rest.policy;
  return rest;
}

function isOldEntries(v: unknown): boolean {
  return typeof v === "object" && v !== null && !Array.isArray(v) && Object.values(v).some(Array.isArray);
}

/** Whether the state file holds anything for the policy tables. */
export function hasPolicyState(parsed: Record<string, unknown>): boolean {
  return parsed.endpoints !== undefined || parsed.policies !== undefined;
}

/**
 * Programs fresh datapaths' policy tables with what the state file's engine
 * holds (endpoints with their own addresses in the ipcache, CIDR prefixes,
 * every endpoint's entries), through one writer so they hold the same bytes.
 */
export function programPolicyTables(engine: PolicyEngine, targets: readonly PolicyTableStore[]): WriteSummary {
  return new PolicyDatapathWriter(targets).applyChange(engine.snapshot());
}

/** An engine rebuilt from the state file's inputs (validated completely). */
export function engineFromState(parsed: unknown): PolicyEngine {
  const o = typeof parsed === "object" && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : fail("state file", `expected an object, got ${describe(parsed)}`);
  const preferred = new Map<string, number>();
  (o.identities === undefined ? [] : array(o.identities, "identities")).forEach((v, i) => {
    const r = fields(v, `identities[${i}]`, ["id", "labels"]);
    if (typeof r.id !== "number" || !Number.isInteger(r.id) || r.id < 1) fail(`identities[${i}].id`, `expected a positive integer, got ${describe(r.id)}`);
    preferred.set(identityLabels(r.labels, `identities[${i}].labels`).id, r.id);
  });
  const endpoints = (o.endpoints === undefined ? [] : array(o.endpoints, "endpoints")).map((v, i) => parseEndpoint(v, `endpoints[${i}]`));
  const docs = o.policies === undefined ? [] : parseDocuments(array(o.policies, "policies"));
  const engine = new PolicyEngine({ allocator: new LocalIdentityAllocator(preferred) });
  const ids = new Set<number>();
  for (const e of endpoints) {
    if (ids.has(e.id)) throw new InvalidInputError(`endpoints: endpoint id ${e.id} given twice`);
    ids.add(e.id);
    engine.upsertEndpoint(e);
  }
  engine.importPolicies(docs);
  return engine;
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

export function loadEngine(path: string, mayBeMissing = false): { raw: Record<string, unknown>; engine: PolicyEngine } {
  const raw = readStateObject(path, mayBeMissing);
  try {
    return { raw, engine: engineFromState(raw) };
  } catch (err) {
    if (err instanceof InvalidInputError) throw new InvalidInputError(`state file ${path}: ${err.message}`, { cause: err });
    throw err;
  }
}

/** The state file's endpoints and policies, validated completely; undefined when it holds none. */
export function statePolicyEngine(path: string): PolicyEngine | undefined {
  const { raw, engine } = loadEngine(path);
  return hasPolicyState(raw) ? engine : undefined;
}

/** Writes the engine's state into the file, keeping its other keys; atomically (rename), so a failure leaves the old file. */
export function saveEngine(path: string, raw: Record<string, unknown>, engine: PolicyEngine): void {
  const next: Record<string, unknown> = { ...raw, ...policyState(engine) };
  if (isOldEntries(next.policy)) delete next.policy;
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(next, null, 2) + "\n");
  renameSync(tmp, path);
}
