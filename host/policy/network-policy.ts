/**
 * Kubernetes NetworkPolicy (networking.k8s.io/v1) -> rules, with Kubernetes'
 * meaning:
 * - the policy selects pods of its namespace (podSelector, `{}` = all);
 * - policyTypes defaults to Ingress, plus Egress when an egress list is given;
 *   a direction in policyTypes enforces (default deny) even with no rules;
 * - a rule without `from`/`to` admits every peer, without `ports` every port;
 * - a peer is podSelector (this namespace), namespaceSelector (all pods of
 *   matching namespaces), both (matching pods of matching namespaces), or
 *   ipBlock (cidr with except; as in Cilium it selects addresses outside the
 *   cluster, not pod IPs).
 */
import type { PolicyDirection } from "./types.js";
import { namespaceSelectorRequirements, namespaced, inNamespace, cidrPeer } from "./peers.js";
import { parseK8sPort } from "./ports.js";
import type { Peer, Rule, RuleSection } from "./rule.js";
import { parseSelector, Selector } from "./selector.js";
import { array, describe, fail, fields, optionalArray, string } from "./validate.js";

export function parseNetworkPolicy(spec: unknown, policy: string, namespace: string): Rule {
  const o = fields(spec, "spec", ["podSelector", "ingress", "egress", "policyTypes"]);
  if (o.podSelector === undefined) fail("spec.podSelector", "required (use {} to select every pod of the namespace)");
  const subject = parseSelector(o.podSelector, "spec.podSelector").and(inNamespace(namespace));

  const types = new Set<PolicyDirection>();
  if (o.policyTypes !== undefined && o.policyTypes !== null) {
    array(o.policyTypes, "spec.policyTypes").forEach((t, i) => {
      const s = string(t, `spec.policyTypes[${i}]`);
      if (s !== "Ingress" && s !== "Egress") fail(`spec.policyTypes[${i}]`, `expected "Ingress" or "Egress", got ${describe(t)}`);
      types.add(s === "Ingress" ? "ingress" : "egress");
    });
  } else {
    types.add("ingress");
    if (o.egress !== undefined && o.egress !== null) types.add("egress");
  }

  const sections: RuleSection[] = [];
  for (const direction of ["ingress", "egress"] as const) {
    const list = optionalArray(o[direction], `spec.${direction}`) ?? [];
    // Kubernetes ignores rules of a direction missing from policyTypes; refusing them avoids a rule that silently does nothing.
    if (list.length && !types.has(direction)) fail(`spec.${direction}`, `given, but policyTypes does not include ${direction === "ingress" ? "Ingress" : "Egress"}`);
    list.forEach((r, i) => sections.push(parseSection(r, `spec.${direction}[${i}]`, direction, namespace)));
  }
  return {
    policy: `${namespace}/${policy}`,
    path: "spec",
    subject,
    enforces: { ingress: types.has("ingress"), egress: types.has("egress") },
    sections,
  };
}

function parseSection(v: unknown, path: string, direction: PolicyDirection, namespace: string): RuleSection {
  const peersField = direction === "ingress" ? "from" : "to";
  const o = fields(v, path, [peersField, "ports"]);
  const peerList = optionalArray(o[peersField], `${path}.${peersField}`) ?? [];
  const portList = optionalArray(o.ports, `${path}.ports`) ?? [];
  return {
    direction,
    deny: false,
    peers: peerList.length ? peerList.map((p, i) => parsePeer(p, `${path}.${peersField}[${i}]`, namespace)) : "all",
    ports: portList.length ? portList.map((p, i) => parseK8sPort(p, `${path}.ports[${i}]`)) : "all",
    path,
  };
}

function parsePeer(v: unknown, path: string, namespace: string): Peer {
  const o = fields(v, path, ["podSelector", "namespaceSelector", "ipBlock"]);
  const hasPod = o.podSelector !== undefined && o.podSelector !== null;
  const hasNs = o.namespaceSelector !== undefined && o.namespaceSelector !== null;
  const hasIp = o.ipBlock !== undefined && o.ipBlock !== null;
  if (hasIp && (hasPod || hasNs)) fail(path, "ipBlock cannot be combined with podSelector or namespaceSelector");
  if (!hasIp && !hasPod && !hasNs) fail(path, "needs podSelector, namespaceSelector or ipBlock");
  if (hasIp) {
    const b = fields(o.ipBlock, `${path}.ipBlock`, ["cidr", "except"]);
    if (b.cidr === undefined) fail(`${path}.ipBlock.cidr`, "required");
    return cidrPeer(b.cidr, b.except, `${path}.ipBlock.cidr`, `${path}.ipBlock.except`);
  }
  const pods = hasPod ? parseSelector(o.podSelector, `${path}.podSelector`) : undefined;
  if (!hasNs) {
    return { scope: "endpoints", selector: namespaced(pods!, namespace), prefixes: [], text: `pods ${pods!.key} in namespace ${namespace}` };
  }
  const namespaces = parseSelector(o.namespaceSelector, `${path}.namespaceSelector`);
  const selector = (pods ?? Selector.all).and(...namespaceSelectorRequirements(namespaces));
  return { scope: "endpoints", selector, prefixes: [], text: `pods ${pods?.key ?? "{}"} in namespaces ${namespaces.key}` };
}
