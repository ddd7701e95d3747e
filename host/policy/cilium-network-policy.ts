/**
 * CiliumNetworkPolicy (cilium.io/v2) -> rules, with Cilium's meaning:
 * - `spec` is one rule, `specs` a list; each has an endpointSelector;
 * - a rule with `ingress` or `ingressDeny` (even empty) puts the endpoints it
 *   selects into default deny for ingress (likewise egress), as Cilium does;
 * - an element of ingress/egress admits the union of its fromEndpoints,
 *   fromCIDR, fromCIDRSet and fromEntities (toX for egress) on its toPorts;
 *   no L3 field but toPorts: any peer on those ports; neither: nobody (`- {}`
 *   is Cilium's way to write "default deny");
 * - ingressDeny/egressDeny elements have the same shape and deny; a deny wins
 *   over every allow for the same traffic;
 * - in a namespaced policy, endpointSelector and fromEndpoints apply in the
 *   policy's namespace unless they name io.kubernetes.pod.namespace.
 * L7 rules (toPorts[].rules), FQDNs, services and named ports are refused.
 */
import type { PolicyDirection } from "./types.js";
import { endpointPeer, entityPeer, namespaced, parseCidrList, parseCidrSet } from "./peers.js";
import { parseCiliumPort } from "./ports.js";
import type { Peer, PortRange, Rule, RuleSection } from "./rule.js";
import { parseSelector } from "./selector.js";
import { array, fail, fields, optionalArray } from "./validate.js";

const SECTIONS = [
  { field: "ingress", direction: "ingress", deny: false },
  { field: "ingressDeny", direction: "ingress", deny: true },
  { field: "egress", direction: "egress", deny: false },
  { field: "egressDeny", direction: "egress", deny: true },
] as const;

const UNSUPPORTED: Record<string, string> = {
  toFQDNs: "DNS-based rules (toFQDNs) are not supported",
  toServices: "service rules (toServices) are not supported",
  toGroups: "toGroups is not supported",
  fromRequires: "fromRequires is not supported",
  toRequires: "toRequires is not supported",
  icmps: "icmps is not supported: use toPorts with protocol ICMP or ICMPv6",
  authentication: "authentication is not supported",
  toNodes: "toNodes is not supported",
  fromNodes: "fromNodes is not supported",
};

/** `spec` or `specs[i]` of a CiliumNetworkPolicy; `namespace` undefined for a cluster-wide policy. */
export function parseCiliumRule(v: unknown, path: string, policy: string, namespace: string | undefined): Rule {
  const o = fields(v, path, ["endpointSelector", "nodeSelector", "ingress", "ingressDeny", "egress", "egressDeny", "description", "labels", "enableDefaultDeny"]);
  if (o.nodeSelector !== undefined) fail(`${path}.nodeSelector`, "host policies (nodeSelector) are not supported");
  if (o.endpointSelector === undefined) fail(`${path}.endpointSelector`, "required (use {} to select every endpoint)");
  if (o.enableDefaultDeny !== undefined) fail(`${path}.enableDefaultDeny`, "is not supported: a rule with ingress/egress always enforces that direction");
  const subject = namespaced(parseSelector(o.endpointSelector, `${path}.endpointSelector`), namespace);
  const sections: RuleSection[] = [];
  const enforces: Record<PolicyDirection, boolean> = { ingress: false, egress: false };
  for (const s of SECTIONS) {
    const list = optionalArray(o[s.field], `${path}.${s.field}`);
    if (list === undefined) continue;
    enforces[s.direction] = true;
    list.forEach((e, i) => sections.push(parseSection(e, `${path}.${s.field}[${i}]`, s.direction, s.deny, namespace)));
  }
  return { policy, path, subject, enforces, sections };
}

function parseSection(v: unknown, path: string, direction: PolicyDirection, deny: boolean, namespace: string | undefined): RuleSection {
  const dir = direction === "ingress" ? "from" : "to";
  const l3 = [`${dir}Endpoints`, `${dir}CIDR`, `${dir}CIDRSet`, `${dir}Entities`];
  const raw = fields(v, path, [...l3, "toPorts", ...Object.keys(UNSUPPORTED)]);
  for (const k of Object.keys(UNSUPPORTED)) if (raw[k] !== undefined) fail(`${path}.${k}`, UNSUPPORTED[k]!);

  let anyL3 = false;
  let all = false;
  const peers: Peer[] = [];
  const eps = optionalArray(raw[`${dir}Endpoints`], `${path}.${dir}Endpoints`);
  if (eps) {
    anyL3 = true;
    eps.forEach((e, i) => {
      const at = `${path}.${dir}Endpoints[${i}]`;
      const sel = parseSelector(e, at);
      peers.push(endpointPeer(sel, namespace, `endpoints ${namespaced(sel, namespace).key}`));
    });
  }
  const cidrs = optionalArray(raw[`${dir}CIDR`], `${path}.${dir}CIDR`);
  if (cidrs) { anyL3 = true; peers.push(...parseCidrList(cidrs, `${path}.${dir}CIDR`)); }
  const sets = optionalArray(raw[`${dir}CIDRSet`], `${path}.${dir}CIDRSet`);
  if (sets) { anyL3 = true; sets.forEach((c, i) => peers.push(parseCidrSet(c, `${path}.${dir}CIDRSet[${i}]`))); }
  const entities = optionalArray(raw[`${dir}Entities`], `${path}.${dir}Entities`);
  if (entities) {
    anyL3 = true;
    entities.forEach((e, i) => {
      const p = entityPeer(e, `${path}.${dir}Entities[${i}]`);
      if (p === "all") all = true;
      else peers.push(p);
    });
  }

  let ports: PortRange[] | "all" = "all";
  const toPorts = optionalArray(raw.toPorts, `${path}.toPorts`);
  if (toPorts && toPorts.length) {
    ports = [];
    toPorts.forEach((tp, i) => {
      const at = `${path}.toPorts[${i}]`;
      const t = fields(tp, at, ["ports", "rules", "originatingTLS", "terminatingTLS", "serverNames", "listener"]);
      for (const k of ["rules", "originatingTLS", "terminatingTLS", "serverNames", "listener"]) {
        if (t[k] !== undefined) fail(`${at}.${k}`, "L7 / proxy rules are not supported");
      }
      const list = array(t.ports, `${at}.ports`);
      if (list.length === 0) fail(`${at}.ports`, "must not be empty");
      list.forEach((p, j) => (ports as PortRange[]).push(parseCiliumPort(p, `${at}.ports[${j}]`)));
    });
  }

  // No L3 field at all: Cilium's L4-only rule (any peer) if it has ports, nothing ("- {}") otherwise.
  const peerSet: Peer[] | "all" = all || (!anyL3 && ports !== "all") ? "all" : peers;
  return { direction, deny, peers: peerSet, ports, path };
}
