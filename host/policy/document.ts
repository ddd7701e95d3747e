/**
 * Policy documents (JSON): a NetworkPolicy, CiliumNetworkPolicy or
 * CiliumClusterwideNetworkPolicy object, a JSON list of them, or a Kubernetes
 * `List` with `items`. Every document is validated completely before any is
 * returned, so an import either yields all its rules or fails naming the field.
 */
import { InvalidInputError } from "../errors.js";
import { parseCiliumRule } from "./cilium-network-policy.js";
import { parseNetworkPolicy } from "./network-policy.js";
import type { Rule } from "./rule.js";
import { array, describe, fail, fields, object, objectName, string } from "./validate.js";

export type PolicyKind = "NetworkPolicy" | "CiliumNetworkPolicy" | "CiliumClusterwideNetworkPolicy";

export interface PolicyDocument {
  /** "namespace/name", or "name" for a cluster-wide policy: what `policy delete` takes. */
  name: string;
  kind: PolicyKind;
  rules: Rule[];
  /** The document as given: what the state file stores and `policy get --json` prints. */
  source: unknown;
}

const API_VERSIONS: Record<PolicyKind, string> = {
  NetworkPolicy: "networking.k8s.io/v1",
  CiliumNetworkPolicy: "cilium.io/v2",
  CiliumClusterwideNetworkPolicy: "cilium.io/v2",
};

/** One document; errors read `NetworkPolicy default/web: spec.ingress[0].ports[0].port: ...`. */
export function parseDocument(v: unknown, where = ""): PolicyDocument {
  const at = (p: string) => (where ? `${where}.${p}` : p);
  const top = object(v, where || "document");
  const kind = string(top.kind, at("kind")) as PolicyKind;
  if (!(kind in API_VERSIONS)) fail(at("kind"), `expected NetworkPolicy, CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy, got ${describe(top.kind)}`);
  fields(top, where || "document", ["apiVersion", "kind", "metadata", "spec", "specs", "status"]);
  if (top.apiVersion !== API_VERSIONS[kind]) fail(at("apiVersion"), `expected "${API_VERSIONS[kind]}" for ${kind}, got ${describe(top.apiVersion)}`);
  const meta = object(top.metadata, at("metadata"));
  const name = objectName(meta.name, at("metadata.name"));
  let namespace: string | undefined;
  if (kind === "NetworkPolicy") namespace = meta.namespace === undefined ? "default" : objectName(meta.namespace, at("metadata.namespace"));
  else if (kind === "CiliumNetworkPolicy") namespace = meta.namespace === undefined ? "default" : objectName(meta.namespace, at("metadata.namespace"));
  else if (meta.namespace !== undefined) fail(at("metadata.namespace"), "a cluster-wide policy has no namespace");
  const full = namespace === undefined ? name : `${namespace}/${name}`;
  try {
    const rules: Rule[] = [];
    if (kind === "NetworkPolicy") {
      if (top.specs !== undefined) fail("specs", "NetworkPolicy has one spec");
      rules.push(parseNetworkPolicy(top.spec, name, namespace!));
    } else {
      if (top.spec === undefined && top.specs === undefined) fail("spec", "required (or specs)");
      if (top.spec !== undefined && top.spec !== null) rules.push(parseCiliumRule(top.spec, "spec", full, namespace));
      if (top.specs !== undefined && top.specs !== null) {
        array(top.specs, "specs").forEach((s, i) => rules.push(parseCiliumRule(s, `specs[${i}]`, full, namespace)));
      }
    }
    return { name: full, kind, rules, source: v };
  } catch (err) {
    if (err instanceof InvalidInputError) throw new InvalidInputError(`${kind} ${full}: ${where ? `${where}.` : ""}${err.message}`, { cause: err });
    throw err;
  }
}

/** Every document of a parsed file; duplicate names are an error. */
export function parseDocuments(v: unknown): PolicyDocument[] {
  let items: { value: unknown; where: string }[];
  if (Array.isArray(v)) items = v.map((value, i) => ({ value, where: `[${i}]` }));
  else if (typeof v === "object" && v !== null && (v as { kind?: unknown }).kind === "List") {
    items = array((v as { items?: unknown }).items, "items").map((value, i) => ({ value, where: `items[${i}]` }));
  } else items = [{ value: v, where: "" }];
  const docs = items.map(({ value, where }) => parseDocument(value, where));
  const seen = new Set<string>();
  for (const d of docs) {
    if (seen.has(d.name)) throw new InvalidInputError(`policy ${d.name} appears twice in one import`);
    seen.add(d.name);
  }
  return docs;
}

/** File text -> documents. JSON only: no YAML library is installed (see docs/policy-engine.md). */
export function parsePolicyText(text: string, file: string): PolicyDocument[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    const yamlish = /^\s*(apiVersion|kind)\s*:/m.test(text);
    throw new InvalidInputError(`parse ${file}: ${(err as Error).message}${yamlish ? " (the file looks like YAML; membrane reads JSON policy files only)" : ""}`, { cause: err });
  }
  return parseDocuments(parsed);
}
