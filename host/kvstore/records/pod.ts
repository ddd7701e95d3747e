/**
 * A pod as its own node's agent needs it: the operator writes one per pod
 * under the node it runs on (`pods/v1/<cluster>/<node>/<namespace>/<name>`),
 * so an agent follows only its node's pods, as a Cilium agent watches the
 * apiserver's pods with a spec.nodeName field selector. Following every pod
 * manifest instead made each of 5,000 agents list and decode 100,000 pods to
 * keep the ~20 on its node.
 */
import { compact, fail, ip, list, object, text, type Mode } from "./fields.js";

export interface PodRecord {
  namespace: string;
  name: string;
  node: string;
  /** The pod's labels (its identity is derived from them and the namespace). */
  labels: Record<string, string>;
  /** At most one address per family; empty until the pod has started. */
  ips: string[];
}

const FIELDS = ["namespace", "name", "node", "labels", "ips"];

export function readPod(v: unknown, path: string, mode: Mode): PodRecord {
  const o = object(v, path, mode, FIELDS);
  const labels = object(o.labels ?? {}, `${path}.labels`, "slim", []);
  const cleanLabels: Record<string, string> = {};
  for (const [k, value] of Object.entries(labels)) {
    if (k === "") fail(`${path}.labels`, "a label key must not be empty");
    // a label's value may be empty in Kubernetes
    if (typeof value !== "string") fail(`${path}.labels.${k}`, `expected a string, got ${JSON.stringify(value)}`);
    cleanLabels[k] = value;
  }
  const ips = list(o.ips ?? [], `${path}.ips`).map((a, i) => ip(a, `${path}.ips[${i}]`));
  if (ips.filter((a) => a.includes(":")).length > 1 || ips.filter((a) => !a.includes(":")).length > 1) fail(`${path}.ips`, "at most one address per family");
  return compact({
    namespace: text(o.namespace, `${path}.namespace`),
    name: text(o.name, `${path}.name`),
    node: text(o.node, `${path}.node`),
    labels: cleanLabels,
    ips,
  });
}
