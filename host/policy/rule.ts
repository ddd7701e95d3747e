/**
 * The engine's own form of a rule, whatever document it came from
 * (NetworkPolicy or CiliumNetworkPolicy): who it applies to, and per
 * direction which peers may (or may not) talk on which ports.
 */
import type { Prefix } from "../packet/cidr.js";
import type { Identity } from "../identity/allocator.js";
import type { PolicyDirection, PolicyProto } from "./types.js";
import type { Selector } from "./selector.js";

/**
 * A set of remote identities.
 * - `endpoints`: identities of endpoints whose labels the selector matches
 *   (reserved and CIDR identities only if the selector names a `reserved:`
 *   label, as `matchLabels: {"reserved:host": ""}`).
 * - `identities`: any identity whose labels match: entities (reserved:world,
 *   ...) and CIDR sets (cidr:10.0.0.0/8 present, cidr:<except> absent).
 */
export interface Peer {
  scope: "endpoints" | "identities";
  selector: Selector;
  /** Prefixes whose CIDR identities must exist for this peer to select them (a CIDR set and its exceptions). */
  prefixes: Prefix[];
  /** How the document wrote it, for `policy trace`. */
  text: string;
}

export function peerKey(p: Peer): string {
  return `${p.scope} ${p.selector.key}`;
}

export function peerMatches(p: Peer, identity: Identity): boolean {
  if (p.scope === "endpoints" && identity.kind !== "endpoint" && !p.selector.mentionsSource("reserved")) return false;
  return p.selector.matches(identity.labels);
}

/** Destination ports: `port` 0 = every port of `proto`; proto 0 (only with port 0) = every protocol. */
export interface PortRange {
  proto: PolicyProto;
  port: number;
  /** Last port of a range (endPort); equal to `port` for one port. */
  endPort: number;
}

export interface RuleSection {
  direction: PolicyDirection;
  deny: boolean;
  /** "all": any remote identity (entry identity 0). An empty list selects nobody. */
  peers: Peer[] | "all";
  /** "all": any port and protocol. */
  ports: PortRange[] | "all";
  /** Field path of this section in its document: `spec.ingress[0]`. */
  path: string;
}

export interface Rule {
  /** "namespace/name" of the policy, or "name" for a cluster-wide one. */
  policy: string;
  /** Path of this rule within the document (CiliumNetworkPolicy `specs[i]`). */
  path: string;
  subject: Selector;
  /** A rule with an ingress (egress) part puts the endpoints it selects into default deny that way. */
  enforces: Record<PolicyDirection, boolean>;
  sections: RuleSection[];
}

export function rulePrefixes(rule: Rule): Prefix[] {
  const out: Prefix[] = [];
  for (const s of rule.sections) if (s.peers !== "all") for (const p of s.peers) out.push(...p.prefixes);
  return out;
}
