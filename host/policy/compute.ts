/**
 * An endpoint's policy from the rules that select it: the set of entries its
 * table holds and whether each direction is enforced. Pure: the caller says
 * which identities each peer selects, so the incremental engine (cached peer
 * sets) and the full recompute (fresh ones) share this code.
 */
import type { LabelSet } from "../identity/labels.js";
import type { PolicyDirection, PolicyEntry } from "./types.js";
import { expandPorts } from "./ports.js";
import type { Peer, Rule } from "./rule.js";

export interface ComputedPolicy {
  enforce: Record<PolicyDirection, boolean>;
  /** By entryKey; an allow and a deny for the same key keep only the deny. */
  entries: Map<string, PolicyEntry>;
}

/** The datapath's key of an entry (deny is its value, not part of the key). */
export function entryKey(e: Pick<PolicyEntry, "direction" | "identity" | "port" | "proto">): string {
  return `${e.direction === "ingress" ? "i" : "e"}:${e.identity}:${e.port}:${e.proto}`;
}

export function sameEntry(a: PolicyEntry, b: PolicyEntry): boolean {
  return a.deny === b.deny && entryKey(a) === entryKey(b);
}

export function computePolicy(rules: Iterable<Rule>, selected: (peer: Peer) => Iterable<number>): ComputedPolicy {
  const enforce = { ingress: false, egress: false };
  const entries = new Map<string, PolicyEntry>();
  for (const rule of rules) {
    if (rule.enforces.ingress) enforce.ingress = true;
    if (rule.enforces.egress) enforce.egress = true;
    for (const s of rule.sections) {
      const ids: Iterable<number> = s.peers === "all" ? [0] : unionOf(s.peers, selected);
      const ports = s.ports === "all" ? [{ port: 0, proto: 0 as const }] : s.ports.flatMap(expandPorts);
      for (const identity of ids) {
        for (const { port, proto } of ports) {
          const e: PolicyEntry = { identity, port, proto, direction: s.direction, deny: s.deny };
          const k = entryKey(e);
          const prev = entries.get(k);
          if (!prev || (!prev.deny && e.deny)) entries.set(k, e);
        }
      }
    }
  }
  return { enforce, entries };
}

function unionOf(peers: Peer[], selected: (peer: Peer) => Iterable<number>): Iterable<number> {
  if (peers.length === 1) return selected(peers[0]!);
  const out = new Set<number>();
  for (const p of peers) for (const id of selected(p)) out.add(id);
  return out;
}

/** Rules whose subject selects `labels`. */
export function rulesSelecting(rules: Iterable<Rule>, labels: LabelSet): Rule[] {
  const out: Rule[] = [];
  for (const r of rules) if (r.subject.matches(labels)) out.push(r);
  return out;
}

export interface PolicyPacket {
  direction: PolicyDirection;
  /** Remote identity: the source for ingress, the destination for egress. */
  identity: number;
  /** Destination port (0 for ICMP). */
  port: number;
  proto: number;
}

export type LookupResult = { verdict: "allow" | "deny"; entry?: PolicyEntry; reason: "no-enforcement" | "allow-entry" | "deny-entry" | "default-deny" };

/**
 * What a datapath must decide for a new flow, given an endpoint's table: the
 * entries that match (identity equal or 0, port equal or 0, proto equal or 0);
 * any deny wins, else any allow, else default deny when the direction is
 * enforced. The datapath gets this with at most 8 exact lookups
 * ({id, 0} x {port, 0} x {proto, 0}).
 */
export function lookup(entries: Iterable<PolicyEntry>, enforced: boolean, p: PolicyPacket): LookupResult {
  if (!enforced) return { verdict: "allow", reason: "no-enforcement" };
  let allow: PolicyEntry | undefined;
  for (const e of entries) {
    if (e.direction !== p.direction) continue;
    if (e.identity !== 0 && e.identity !== p.identity) continue;
    if (e.port !== 0 && e.port !== p.port) continue;
    if (e.proto !== 0 && e.proto !== p.proto) continue;
    if (e.deny) return { verdict: "deny", entry: e, reason: "deny-entry" };
    allow ??= e;
  }
  return allow ? { verdict: "allow", entry: allow, reason: "allow-entry" } : { verdict: "deny", reason: "default-deny" };
}
