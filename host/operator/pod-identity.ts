/**
 * The label set a pod's security identity is allocated for: its labels as
 * `k8s:` labels plus `k8s:io.kubernetes.pod.namespace=<namespace>`, as
 * Cilium derives it and as namespaced policies select it
 * (host/policy/peers.ts). Agents and the operator must derive it the same
 * way: the agent allocates the identity for this set on the cluster allocator
 * (its node key `identities/v1/value/<labels>/<node>`), the operator reads
 * that key to write the pod's endpoint and ipcache records.
 */
import { DEFAULT_SOURCE, LabelSet, type Label } from "../identity/labels.js";
import { NAMESPACE_KEY } from "../policy/peers.js";
import type { PodManifest } from "./manifests/kinds.js";

export function podIdentityLabels(pod: Pick<PodManifest, "namespace" | "labels">): LabelSet {
  const labels: Label[] = [];
  for (const [key, value] of Object.entries(pod.labels)) {
    // The namespace label is the pod's namespace, whatever the pod claims.
    if (key !== NAMESPACE_KEY) labels.push({ source: DEFAULT_SOURCE, key, value });
  }
  labels.push({ source: DEFAULT_SOURCE, key: NAMESPACE_KEY, value: pod.namespace });
  return LabelSet.of(labels);
}
