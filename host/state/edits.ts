/**
 * The changes commands make to the state file's policy section: endpoints
 * added or deleted, policies imported or deleted. Each is one locked
 * read-modify-write (host/state/file.ts): the change is computed on the
 * engine rebuilt from the file, and the file written back only when the
 * result loads (sizes included).
 */
import { InvalidInputError } from "../errors.js";
import type { PolicyDocument } from "../policy/document.js";
import type { EngineChange, PolicyEngine } from "../policy/engine.js";
import { parseEndpoint } from "../policy/endpoint.js";
import { isOlderPolicyEntries } from "./datapath-options.js";
import { updateState } from "./file.js";
import { policyState } from "./policy.js";
import type { MembraneState } from "./schema.js";

/** The file with the engine's policy section written in; the older form of `policy` (entries by endpoint id) dropped. */
function withEngine(state: MembraneState, engine: PolicyEngine): Record<string, unknown> {
  const next: Record<string, unknown> = { ...state.raw, ...policyState(engine) };
  if (isOlderPolicyEntries(next.policy)) delete next.policy;
  return next;
}

function edit(path: string, mayBeMissing: boolean, change: (engine: PolicyEngine) => EngineChange): EngineChange {
  return updateState(path, (state) => {
    const result = change(state.engine);
    return { next: withEngine(state, state.engine), result };
  }, { mayBeMissing });
}

export interface EndpointFields {
  id: number;
  /** "k=v,..." or a list of labels. */
  labels: unknown;
  ipv4?: string;
  ipv6?: string;
  ifindex?: number;
  mac?: string;
}

/**
 * Adds an endpoint (the file is created when missing). An id the file holds
 * already is refused unless `replace`: silently replacing an endpoint would
 * move its addresses and identity without anyone having asked.
 */
export function addEndpoint(path: string, fields: EndpointFields, opts: { replace?: boolean } = {}): EngineChange {
  const input = parseEndpoint(fields, "endpoint");
  return edit(path, true, (engine) => {
    const existing = engine.endpoint(input.id);
    if (existing && !opts.replace) {
      throw new InvalidInputError(`endpoint ${input.id} exists already in ${path} (labels ${existing.input.labels.toStrings().join(",") || "none"}${existing.record.ipv4 ? `, ipv4 ${existing.record.ipv4}` : ""}${existing.record.ipv6 ? `, ipv6 ${existing.record.ipv6}` : ""}): delete it first, or add --replace`);
    }
    return engine.upsertEndpoint(input);
  });
}

export function deleteEndpoint(path: string, id: number): EngineChange {
  return edit(path, false, (engine) => engine.removeEndpoint(id));
}

/** Adds the documents, replacing policies of the same name (the file is created when missing). */
export function importPolicies(path: string, docs: PolicyDocument[]): EngineChange {
  return edit(path, true, (engine) => engine.importPolicies(docs));
}

/** Deletes the named policies, or every policy with "all". */
export function deletePolicies(path: string, which: readonly string[] | "all"): EngineChange {
  return edit(path, false, (engine) => (which === "all" ? engine.deleteAllPolicies() : engine.deletePolicies([...which])));
}
