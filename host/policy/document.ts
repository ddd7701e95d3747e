/**
 * Policy documents (JSON or YAML): a NetworkPolicy, CiliumNetworkPolicy or
 * CiliumClusterwideNetworkPolicy object, a list of them, or a Kubernetes
 * `List` with `items`; in YAML also several of these as `---` separated
 * documents, as `kubectl apply -f` takes them. Every document is validated
 * completely before any is returned, so an import either yields all its rules
 * or fails naming the document and the field.
 */
import { parseAllDocuments } from "yaml";
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

/** The policy objects one parsed value holds, with where each sits in it. */
function policyItems(v: unknown): { value: unknown; where: string }[] {
  if (Array.isArray(v)) return v.map((value, i) => ({ value, where: `[${i}]` }));
  if (typeof v === "object" && v !== null && (v as { kind?: unknown }).kind === "List") {
    return array((v as { items?: unknown }).items, "items").map((value, i) => ({ value, where: `items[${i}]` }));
  }
  return [{ value: v, where: "" }];
}

/** Duplicate names in one import are an error: which of the two would win is not obvious. */
function checkUnique(docs: PolicyDocument[]): PolicyDocument[] {
  const seen = new Set<string>();
  for (const d of docs) {
    if (seen.has(d.name)) throw new InvalidInputError(`policy ${d.name} appears twice in one import`);
    seen.add(d.name);
  }
  return docs;
}

/** Every document of a parsed file; duplicate names are an error. */
export function parseDocuments(v: unknown): PolicyDocument[] {
  return checkUnique(policyItems(v).map(({ value, where }) => parseDocument(value, where)));
}

/** Deeper than any policy needs (Kubernetes objects stay under 20); the validators and their messages recurse. */
const MAX_NESTING = 64;

/** Refuses values nested past MAX_NESTING, naming the path, before anything recurses into them (iteratively). */
function refuseDeepNesting(root: unknown, file: string): void {
  const stack: Array<{ v: unknown; path: string; depth: number }> = [{ v: root, path: "", depth: 0 }];
  while (stack.length) {
    const { v, path, depth } = stack.pop()!;
    if (typeof v !== "object" || v === null) continue;
    if (depth >= MAX_NESTING) throw new InvalidInputError(`parse ${file}: ${path || "the document"} is nested more than ${MAX_NESTING} levels deep`);
    if (Array.isArray(v)) v.forEach((x, i) => stack.push({ v: x, path: `${path}[${i}]`, depth: depth + 1 }));
    else for (const [k, x] of Object.entries(v)) stack.push({ v: x, path: path ? `${path}.${k}` : k, depth: depth + 1 });
  }
}

/**
 * File text -> documents. Text starting with `{` or `[` is JSON (JSON.parse's
 * messages are the clearer ones for it); anything else is YAML 1.2 (core
 * schema: `yes`, `on` and `0777` stay what YAML 1.2 says, not YAML 1.1's
 * booleans and octals). A YAML error, a warning (an unknown tag), or a field
 * error in any document fails the whole file.
 */
export function parsePolicyText(text: string, file: string): PolicyDocument[] {
  const trimmed = text.trimStart();
  if (trimmed.startsWith("{") || trimmed.startsWith("[")) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new InvalidInputError(`parse ${file}: ${(err as Error).message}`, { cause: err });
    }
    refuseDeepNesting(parsed, file);
    return parseDocuments(parsed);
  }
  return parseYaml(text, file);
}

function parseYaml(text: string, file: string): PolicyDocument[] {
  const yamlDocs = parseAllDocuments(text, { schema: "core", uniqueKeys: true, prettyErrors: true });
  const values: { value: unknown; label: string }[] = [];
  yamlDocs.forEach((doc, i) => {
    const label = yamlDocs.length > 1 ? `${file} document ${i + 1}` : file;
    const problem = doc.errors[0] ?? doc.warnings[0];
    if (problem) throw new InvalidInputError(`parse ${label}: ${problem.message.trimEnd()}`, { cause: problem });
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (err) {
      throw new InvalidInputError(`parse ${label}: ${(err as Error).message}`, { cause: err });
    }
    refuseDeepNesting(value, label);
    // An empty document (a trailing `---`, a file of comments) holds no policy, as for kubectl.
    if (value !== null) values.push({ value, label });
  });
  if (values.length === 0) throw new InvalidInputError(`parse ${file}: no policy documents`);
  const docs: PolicyDocument[] = [];
  for (const { value, label } of values) {
    try {
      docs.push(...policyItems(value).map(({ value: v, where }) => parseDocument(v, where)));
    } catch (err) {
      if (err instanceof InvalidInputError && values.length > 1) throw new InvalidInputError(`${label}: ${err.message}`, { cause: err });
      throw err;
    }
  }
  return checkUnique(docs);
}
