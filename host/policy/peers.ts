/**
 * Peers of rules built from the documents' shapes: endpoint selectors (with
 * the policy's namespace), namespace selectors, CIDR sets with exceptions and
 * entities. All of them end up as label selectors over identities, as in
 * Cilium, so that one matching function serves every kind.
 */
import { parsePrefix, prefixContains, type Prefix } from "../packet/cidr.js";
import type { Peer } from "./rule.js";
import { Selector, type Requirement } from "./selector.js";
import { array, describe, fail, fields, optionalArray, string } from "./validate.js";

/** Cilium's label for a pod's namespace. */
export const NAMESPACE_KEY = "io.kubernetes.pod.namespace";
/** Cilium copies a namespace's labels onto its pods under this prefix, so namespace selectors are pod selectors. */
export const NAMESPACE_LABELS_PREFIX = "io.cilium.k8s.namespace.labels.";

export function inNamespace(namespace: string): Requirement {
  return { source: "k8s", key: NAMESPACE_KEY, operator: "In", values: [namespace] };
}

/**
 * A selector of a namespaced policy applies in its namespace unless it names
 * a namespace itself, or a reserved identity (which has no namespace).
 */
export function namespaced(selector: Selector, namespace: string | undefined): Selector {
  if (namespace === undefined || selector.mentionsKey(NAMESPACE_KEY) || selector.mentionsSource("reserved")) return selector;
  return selector.and(inNamespace(namespace));
}

export function endpointPeer(selector: Selector, namespace: string | undefined, text: string): Peer {
  return { scope: "endpoints", selector: namespaced(selector, namespace), prefixes: [], text };
}

/** NetworkPolicy namespaceSelector: its requirements moved onto the namespace-label copies pods carry. */
export function namespaceSelectorRequirements(selector: Selector): Requirement[] {
  if (selector.requirements.length === 0) return [{ source: "k8s", key: NAMESPACE_KEY, operator: "Exists", values: [] }];
  return selector.requirements.map((r) => ({ ...r, source: "k8s", key: NAMESPACE_LABELS_PREFIX + r.key }));
}

function cidrLabel(p: Prefix, operator: "Exists" | "DoesNotExist"): Requirement {
  return { source: "cidr", key: p.text, operator, values: [] };
}

/**
 * A CIDR with exceptions. Exact through the ipcache: every prefix gets an
 * identity, the identity of an exception carries the labels of its enclosing
 * prefix too, and the selector wants the prefix label without any exception
 * label; addresses in an exception resolve (longest prefix) to the
 * exception's identity, which the selector leaves out.
 */
export function cidrPeer(cidrValue: unknown, exceptValue: unknown, cidrPath: string, exceptPath: string): Peer {
  const prefix = parsePrefix(cidrValue, cidrPath);
  const except = (optionalArray(exceptValue, exceptPath) ?? []).map((e, i) => {
    const ex = parsePrefix(e, `${exceptPath}[${i}]`);
    if (!prefixContains(prefix, ex) || ex.length === prefix.length) {
      fail(`${exceptPath}[${i}]`, `${ex.text} is not a sub-range of ${prefix.text}`);
    }
    return ex;
  });
  const selector = new Selector([cidrLabel(prefix, "Exists"), ...except.map((e) => cidrLabel(e, "DoesNotExist"))]);
  const text = except.length ? `${prefix.text} except ${except.map((e) => e.text).join(", ")}` : prefix.text;
  return { scope: "identities", selector, prefixes: [prefix, ...except], text: `cidr ${text}` };
}

export const ENTITIES = ["all", "world", "cluster", "host", "health", "init", "unmanaged"] as const;

/** An entity; `all` is returned as "all" (entry identity 0: any remote, known or not). */
export function entityPeer(v: unknown, path: string): Peer | "all" {
  const name = string(v, path);
  if (!(ENTITIES as readonly string[]).includes(name)) fail(path, `expected one of ${ENTITIES.join(", ")}, got ${describe(v)}`);
  if (name === "all") return "all";
  // cluster: everything that is not outside the cluster (endpoints and the reserved identities of this node).
  const req: Requirement = name === "cluster"
    ? { source: "reserved", key: "world", operator: "DoesNotExist", values: [] }
    : { source: "reserved", key: name, operator: "Exists", values: [] };
  return { scope: "identities", selector: new Selector([req]), prefixes: [], text: `entity ${name}` };
}

export function parseCidrSet(v: unknown, path: string): Peer {
  const o = fields(v, path, ["cidr", "except"]);
  return cidrPeer(o.cidr, o.except, `${path}.cidr`, `${path}.except`);
}

export function parseCidrList(v: unknown, path: string): Peer[] {
  return array(v, path).map((c, i) => cidrPeer(c, undefined, `${path}[${i}]`, `${path}[${i}].except`));
}
