/**
 * Desired state in the kvstore: `membrane apply` stores each reduced manifest
 * under `membrane/manifests/v1/<kind>/<namespace>/<name>` and the operator
 * (the single writer of slim records, as in Cilium) converts them. The
 * manifests are stored reduced (host/operator/manifests/), so an annotation
 * or status-only edit of a file does not even change the stored manifest.
 *
 * Policies keep their document, cut down to what the policy parser reads
 * (apiVersion, kind, metadata name/namespace, spec/specs): the operator
 * re-parses it, and the policy record carries it to agents.
 */
import { InvalidInputError } from "../errors.js";
import { parseDocument } from "../policy/document.js";
import type { Manifest, PolicyManifest } from "./manifests/kinds.js";

export const MANIFEST_ROOT = "membrane/manifests/v1/";

/** Key segment per kind; cluster-scoped kinds use "_cluster" as namespace ("_" cannot start a Kubernetes name). */
const KIND_SEGMENT: Record<Manifest["kind"], string> = {
  Node: "nodes",
  Pod: "pods",
  Service: "services",
  EndpointSlice: "endpointslices",
  Endpoints: "endpoints",
  NetworkPolicy: "networkpolicies",
  CiliumNetworkPolicy: "ciliumnetworkpolicies",
  CiliumClusterwideNetworkPolicy: "ciliumclusterwidenetworkpolicies",
};
const SEGMENT_KIND = new Map(Object.entries(KIND_SEGMENT).map(([k, s]) => [s, k as Manifest["kind"]]));
const CLUSTER_SCOPED = "_cluster";

function namespaceAndName(m: Manifest): [string, string] {
  switch (m.kind) {
    case "Node":
      return [CLUSTER_SCOPED, m.name];
    case "NetworkPolicy":
    case "CiliumNetworkPolicy":
    case "CiliumClusterwideNetworkPolicy": {
      const slash = m.name.indexOf("/");
      return slash < 0 ? [CLUSTER_SCOPED, m.name] : [m.name.slice(0, slash), m.name.slice(slash + 1)];
    }
    default:
      return [m.namespace, m.name];
  }
}

export function manifestKey(m: Manifest): string {
  const [ns, name] = namespaceAndName(m);
  return `${MANIFEST_ROOT}${KIND_SEGMENT[m.kind]}/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`;
}

/** A policy document without annotations, labels, status and managed fields: what the parser and agents read. */
export function slimPolicySource(source: unknown): unknown {
  const top = source as Record<string, unknown>;
  const meta = (top.metadata ?? {}) as Record<string, unknown>;
  const out: Record<string, unknown> = {
    apiVersion: top.apiVersion,
    kind: top.kind,
    metadata: meta.namespace === undefined ? { name: meta.name } : { name: meta.name, namespace: meta.namespace },
  };
  if (top.spec !== undefined) out.spec = top.spec;
  if (top.specs !== undefined) out.specs = top.specs;
  return out;
}

/** The stored text of a manifest: canonical JSON, so an unchanged object stores the same bytes. */
export function encodeManifest(m: Manifest): string {
  if (m.kind === "NetworkPolicy" || m.kind === "CiliumNetworkPolicy" || m.kind === "CiliumClusterwideNetworkPolicy") {
    return JSON.stringify({ kind: m.kind, name: m.name, document: slimPolicySource(m.policy.source) });
  }
  return JSON.stringify(m);
}

/**
 * A stored manifest back. Written by `membrane apply` after full validation;
 * a value that does not fit its key (another writer, a corrupted store) is
 * refused naming the key, and the operator skips it with a log line.
 */
export function decodeManifest(key: string, value: string): Manifest {
  if (!key.startsWith(MANIFEST_ROOT)) throw new InvalidInputError(`manifest key ${JSON.stringify(key)}: not under ${MANIFEST_ROOT}`);
  const parts = key.slice(MANIFEST_ROOT.length).split("/");
  const kind = SEGMENT_KIND.get(parts[0] ?? "");
  if (parts.length !== 3 || kind === undefined) throw new InvalidInputError(`manifest key ${JSON.stringify(key)}: expected ${MANIFEST_ROOT}<kind>/<namespace>/<name>`);
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(value) as Record<string, unknown>;
  } catch (err) {
    throw new InvalidInputError(`manifest ${key}: value is not JSON (${(err as Error).message})`);
  }
  if (typeof json !== "object" || json === null || json.kind !== kind) {
    throw new InvalidInputError(`manifest ${key}: kind: expected ${kind}, got ${JSON.stringify((json as { kind?: unknown } | null)?.kind)}`);
  }
  let m: Manifest;
  if (kind === "NetworkPolicy" || kind === "CiliumNetworkPolicy" || kind === "CiliumClusterwideNetworkPolicy") {
    const policy = parseDocument(json.document, `${key}.document`);
    m = { kind, name: policy.name, policy } satisfies PolicyManifest;
  } else {
    m = json as unknown as Manifest;
  }
  if (manifestKey(m) !== key) throw new InvalidInputError(`manifest ${key}: the object inside is ${manifestKey(m)}`);
  return m;
}
