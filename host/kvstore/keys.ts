/**
 * The kvstore's key layout: `membrane/state/<kind>/<version>/...`, one
 * versioned prefix per kind of record, as Cilium's `cilium/state/<kind>/v1/`.
 * A record's format changes only with a new version prefix; a reader meeting
 * a version it does not know refuses it with a clear error instead of
 * misreading it (during a rolling upgrade old agents keep reading v1).
 *
 * Label sets and other free text are percent-encoded in keys: a label key
 * may hold "/", and `value/<labels>/` must never be a prefix of another label
 * set's keys.
 */
import { InvalidInputError, MembraneError } from "../errors.js";

export const STATE_ROOT = "membrane/state";
export const RECORD_KINDS = ["nodes", "identities", "ipcache", "services", "endpoints", "policies", "pods"] as const;
export type RecordKind = (typeof RECORD_KINDS)[number];
/** The version this membrane reads and writes, per kind. */
export const CURRENT_VERSION: Record<RecordKind, string> = {
  nodes: "v1",
  identities: "v1",
  ipcache: "v1",
  services: "v1",
  endpoints: "v1",
  policies: "v1",
  pods: "v1",
};

/** Default cluster name in keys (Cilium's "default"). */
export const DEFAULT_CLUSTER = "default";
/** Namespace segment of a cluster-wide policy: "_" cannot start a Kubernetes name, so it never collides. */
export const CLUSTER_WIDE = "_cluster";

export function kindPrefix(kind: RecordKind): string {
  return `${STATE_ROOT}/${kind}/${CURRENT_VERSION[kind]}/`;
}

function segment(text: string, what: string): string {
  if (text === "") throw new InvalidInputError(`kvstore key: ${what} must not be empty`);
  return encodeURIComponent(text);
}

export const keys = {
  node: (cluster: string, node: string) => `${kindPrefix("nodes")}${segment(cluster, "cluster")}/${segment(node, "node name")}`,
  nodes: (cluster?: string) => (cluster === undefined ? kindPrefix("nodes") : `${kindPrefix("nodes")}${segment(cluster, "cluster")}/`),
  identityMaster: (id: number) => `${kindPrefix("identities")}id/${id}`,
  identityMasters: () => `${kindPrefix("identities")}id/`,
  identityValue: (labels: string, node: string) => `${kindPrefix("identities")}value/${segment(labels, "labels")}/${segment(node, "node name")}`,
  /** Every node's key for one label set (the trailing "/" keeps "a=b" from matching "a=bc"). */
  identityValues: (labels?: string) =>
    labels === undefined ? `${kindPrefix("identities")}value/` : `${kindPrefix("identities")}value/${segment(labels, "labels")}/`,
  identityLock: (labels: string) => `${kindPrefix("identities")}locks/${segment(labels, "labels")}`,
  ipcache: (prefix: string) => `${kindPrefix("ipcache")}${DEFAULT_CLUSTER}/${prefix}`,
  ipcacheAll: () => `${kindPrefix("ipcache")}${DEFAULT_CLUSTER}/`,
  service: (cluster: string, namespace: string, name: string) =>
    `${kindPrefix("services")}${segment(cluster, "cluster")}/${segment(namespace, "namespace")}/${segment(name, "name")}`,
  services: () => kindPrefix("services"),
  endpoint: (cluster: string, namespace: string, name: string) =>
    `${kindPrefix("endpoints")}${segment(cluster, "cluster")}/${segment(namespace, "namespace")}/${segment(name, "name")}`,
  endpoints: () => kindPrefix("endpoints"),
  policy: (namespace: string | undefined, name: string) =>
    `${kindPrefix("policies")}${segment(namespace ?? CLUSTER_WIDE, "namespace")}/${segment(name, "name")}`,
  policies: () => kindPrefix("policies"),
  /** A pod, under the node it runs on: what that node's agent follows. */
  pod: (cluster: string, node: string, namespace: string, name: string) =>
    `${kindPrefix("pods")}${segment(cluster, "cluster")}/${segment(node, "node name")}/${segment(namespace, "namespace")}/${segment(name, "name")}`,
  /** One node's pods (the trailing "/" keeps node "a" from matching node "ab"). */
  nodePods: (cluster: string, node: string) => `${kindPrefix("pods")}${segment(cluster, "cluster")}/${segment(node, "node name")}/`,
  pods: () => kindPrefix("pods"),
};

export interface StateKey {
  kind: RecordKind;
  version: string;
  /** The decoded segments after the version. */
  path: string[];
}

/**
 * Splits a state key. Throws UNSUPPORTED_VERSION for a version this membrane
 * does not read and INVALID_INPUT for a key outside the layout.
 */
export function parseStateKey(key: string): StateKey {
  const parts = key.split("/");
  if (parts.length < 5 || `${parts[0]}/${parts[1]}` !== STATE_ROOT) {
    throw new InvalidInputError(`kvstore key ${JSON.stringify(key)}: not under ${STATE_ROOT}/<kind>/<version>/`);
  }
  const kind = parts[2] as RecordKind;
  if (!RECORD_KINDS.includes(kind)) {
    throw new InvalidInputError(`kvstore key ${JSON.stringify(key)}: unknown record kind "${parts[2]}" (known: ${RECORD_KINDS.join(", ")})`);
  }
  const version = parts[3]!;
  if (version !== CURRENT_VERSION[kind]) {
    throw new UnsupportedVersionError(key, kind, version);
  }
  // most segments have nothing escaped: skip decodeURIComponent for them (every listed record's key comes through here)
  return { kind, version, path: parts.slice(4).map((p) => (p.includes("%") ? decodeURIComponent(p) : p)) };
}

export class UnsupportedVersionError extends MembraneError {
  constructor(readonly key: string, readonly kind: RecordKind, readonly version: string) {
    super(
      "UNSUPPORTED_VERSION",
      `kvstore key ${JSON.stringify(key)}: ${kind} records of version "${version}" are not supported ` +
        `(this membrane reads ${CURRENT_VERSION[kind]}; upgrade membrane or let the writer fall back to ${CURRENT_VERSION[kind]})`,
    );
  }
}
