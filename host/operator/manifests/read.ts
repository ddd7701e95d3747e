/**
 * Manifest files as `kubectl apply -f` takes them: YAML (several `---`
 * documents) or JSON, a single object, a `List` with `items`, or a
 * directory of such files. Everything is validated before anything is
 * returned: one bad document refuses the whole apply, and the message names
 * the file, the document, the object and the field path:
 *   pods.yaml: document 2 (Pod default/web): status.podIPs[0].ip: "10.0.0.300" is not an IP address
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { InvalidInputError } from "../../errors.js";
import { parseDocument } from "../../policy/document.js";
import { array, describe, object, type Obj } from "../../policy/validate.js";
import { manifestId, type Manifest } from "./kinds.js";
import { parseNode } from "./node.js";
import { parsePod } from "./pod.js";
import { parseService } from "./service.js";
import { parseEndpoints, parseEndpointSlice } from "./endpoints.js";

/** kind -> the apiVersion membrane reads and its parser. */
const KINDS: Record<string, { apiVersion: string; parse(top: Obj): Manifest }> = {
  Node: { apiVersion: "v1", parse: parseNode },
  Pod: { apiVersion: "v1", parse: parsePod },
  Service: { apiVersion: "v1", parse: parseService },
  Endpoints: { apiVersion: "v1", parse: parseEndpoints },
  EndpointSlice: { apiVersion: "discovery.k8s.io/v1", parse: parseEndpointSlice },
};
const POLICY_KINDS = ["NetworkPolicy", "CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy"] as const;
const MANIFEST_EXTENSIONS = [".yaml", ".yml", ".json"];

/** One object: its kind picks the parser; field errors get the object's name in front. */
export function parseManifest(value: unknown): Manifest {
  const top = object(value, "document");
  const kind = top.kind;
  if (typeof kind === "string" && (POLICY_KINDS as readonly string[]).includes(kind)) {
    const policy = parseDocument(top);
    return { kind: kind as (typeof POLICY_KINDS)[number], name: policy.name, policy };
  }
  const entry = typeof kind === "string" ? KINDS[kind] : undefined;
  if (!entry) {
    throw new InvalidInputError(`kind: expected one of ${[...Object.keys(KINDS), ...POLICY_KINDS].join(", ")}, got ${describe(kind)}`);
  }
  const name = nameOf(top);
  try {
    if (top.apiVersion !== entry.apiVersion) throw new InvalidInputError(`apiVersion: expected "${entry.apiVersion}" for ${kind}, got ${describe(top.apiVersion)}`);
    return entry.parse(top);
  } catch (err) {
    if (err instanceof InvalidInputError) throw new InvalidInputError(`(${kind} ${name}): ${err.message}`, { cause: err });
    throw err;
  }
}

function nameOf(top: Obj): string {
  const meta = typeof top.metadata === "object" && top.metadata !== null ? (top.metadata as Obj) : {};
  const name = typeof meta.name === "string" ? meta.name : "?";
  if (top.kind === "Node") return name;
  return `${typeof meta.namespace === "string" ? meta.namespace : "default"}/${name}`;
}

/** The objects one parsed document holds (a List's items, or itself). */
function items(v: unknown): { value: unknown; where: string }[] {
  if (Array.isArray(v)) return v.map((value, i) => ({ value, where: `[${i}]` }));
  // "List", "PodList", ...: what kubectl get -o yaml prints.
  const kind = typeof v === "object" && v !== null ? (v as Obj).kind : undefined;
  if (typeof kind === "string" && kind.endsWith("List")) {
    return array((v as Obj).items, "items").map((value, i) => ({ value, where: `items[${i}]` }));
  }
  return [{ value: v, where: "" }];
}

/** Text of one file -> its manifests. `file` is for messages. */
export function parseManifestText(text: string, file: string): Manifest[] {
  const docs: { value: unknown; label: string }[] = [];
  const trimmed = text.trimStart();
  if (trimmed.startsWith("{") || trimmed.startsWith("[")) {
    try {
      docs.push({ value: JSON.parse(text), label: file });
    } catch (err) {
      throw new InvalidInputError(`${file}: ${(err as Error).message}`, { cause: err });
    }
  } else {
    const yamlDocs = parseAllDocuments(text, { schema: "core", uniqueKeys: true, prettyErrors: true });
    yamlDocs.forEach((doc, i) => {
      const label = `${file}: document ${i + 1}`;
      const problem = doc.errors[0] ?? doc.warnings[0];
      if (problem) throw new InvalidInputError(`${label}: ${problem.message.trimEnd()}`, { cause: problem });
      let value: unknown;
      try {
        value = doc.toJS({ maxAliasCount: 100 });
      } catch (err) {
        throw new InvalidInputError(`${label}: ${(err as Error).message}`, { cause: err });
      }
      if (value !== null) docs.push({ value, label });
    });
  }
  const out: Manifest[] = [];
  for (const { value, label } of docs) {
    for (const { value: item, where } of items(value)) {
      try {
        out.push(parseManifest(item));
      } catch (err) {
        if (err instanceof InvalidInputError) {
          // "(Pod default/web): field: ..." follows the place directly; anything else after a colon.
          const place = `${label}${where ? ` ${where}` : ""}`;
          throw new InvalidInputError(err.message.startsWith("(") ? `${place} ${err.message}` : `${place}: ${err.message}`, { cause: err });
        }
        throw err;
      }
    }
  }
  return out;
}

/**
 * A file or a directory (its *.yaml, *.yml and *.json files, sorted by name,
 * not recursive) -> every manifest, or an error naming what is wrong. An
 * object that appears twice (same kind and name) is an error: which copy
 * would win is not obvious.
 */
export function readManifests(path: string): Manifest[] {
  let files: string[];
  try {
    files = statSync(path).isDirectory()
      ? readdirSync(path)
          .filter((f) => MANIFEST_EXTENSIONS.some((e) => f.endsWith(e)))
          .sort()
          .map((f) => join(path, f))
      : [path];
  } catch (err) {
    throw new InvalidInputError(`read manifests ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  if (files.length === 0) throw new InvalidInputError(`${path}: no manifest files (*.yaml, *.yml, *.json)`);
  const all: Manifest[] = [];
  const seen = new Map<string, string>();
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (err) {
      throw new InvalidInputError(`read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
    }
    for (const m of parseManifestText(text, file)) {
      const id = manifestId(m);
      const first = seen.get(id);
      if (first) throw new InvalidInputError(`${file}: ${id} is also in ${first}`);
      seen.set(id, file);
      all.push(m);
    }
  }
  return all;
}
