/**
 * `policy trace`: the verdict for a new flow from a source to a destination
 * (labels or addresses) on a port and protocol, with the rules that decided
 * it. It evaluates the rules themselves (not the tables), then checks the
 * answer against the endpoint's table where the endpoint exists, so a
 * disagreement between the engine's two halves shows instead of hiding.
 */
import { InvalidInputError } from "../errors.js";
import { reservedName, type Identity } from "../identity/allocator.js";
import { parseIp } from "../packet/address.js";
import { lookup } from "./compute.js";
import { endpointLabels } from "./endpoint.js";
import type { PolicyEngine } from "./engine.js";
import { peerMatches, type Rule, type RuleSection } from "./rule.js";
import type { PolicyDirection } from "./types.js";
import { IPPROTO } from "../packet/decode.js";
import { hasPorts, isIcmpProto, PROTO_NAMES } from "../packet/ip-proto.js";

export interface TraceParty {
  given: string;
  identity: Identity;
  /** The identity number, or undefined for labels no endpoint has (the identity would be new). */
  number?: number;
  /** The local endpoint, when the party is one (by address, or by labels an endpoint has). */
  endpoint?: number;
  /** Whether policy of this party applies (a local endpoint, or labels of a would-be one). */
  local: boolean;
}

export interface DirectionTrace {
  direction: PolicyDirection;
  /** Rules selecting the endpoint whose policy is applied. */
  selectedBy: string[];
  enforced: boolean;
  verdict: "allow" | "deny";
  /** The sections that decided: the matching denies, else the matching allows. */
  decidedBy: string[];
  reason: string;
  /** What the endpoint's table says, when the endpoint exists. */
  table?: "allow" | "deny";
}

export interface Trace {
  src: TraceParty;
  dst: TraceParty;
  port: number;
  proto: number;
  egress?: DirectionTrace;
  ingress?: DirectionTrace;
  verdict: "allow" | "deny";
}

const PROTOS: Record<string, number> = { tcp: IPPROTO.TCP, udp: IPPROTO.UDP, icmp: IPPROTO.ICMP, icmpv6: IPPROTO.ICMPV6 };

/** "80/tcp", "53/UDP", "0/icmp", "80" (tcp). */
export function parsePortProto(s: string): { port: number; proto: number } {
  const m = /^(\d{1,5})(?:\/([A-Za-z0-9]+))?$/.exec(s);
  const proto = m ? PROTOS[(m[2] ?? "tcp").toLowerCase()] : undefined;
  if (!m || proto === undefined) throw new InvalidInputError(`--dport: expected PORT/PROTO (tcp, udp, icmp, icmpv6), got "${s}"`);
  const port = Number(m[1]);
  if (port > 65535) throw new InvalidInputError(`--dport: port must be 0..65535, got ${port}`);
  if (isIcmpProto(proto) && port !== 0) throw new InvalidInputError(`--dport: ICMP has no ports: give 0/${m[2]}`);
  return { port, proto };
}

/**
 * Dotted numbers (IPv4's shape, "10.0.0.300", "10.1") or two colons or more
 * with hex digits (IPv6's: a label has one colon at most, "k8s:app=web").
 */
function looksLikeAddress(s: string): boolean {
  if (s.includes("=")) return false;
  return /^\d+(\.\d*)+$/.test(s) || (/^[0-9A-Fa-f:.]+(%\w+)?$/.test(s) && (s.match(/:/g)?.length ?? 0) >= 2);
}

export function resolveParty(engine: PolicyEngine, given: string, what: string): TraceParty {
  let isIp = false;
  try {
    parseIp(given);
    isIp = true;
  } catch (err) {
    // Something shaped like an address that does not parse is a typo, never a label set ("10.0.0.300" is no label).
    if (looksLikeAddress(given)) throw new InvalidInputError(`${what} ${given}: not a valid IP address: ${(err as Error).message}`);
  }
  if (isIp) {
    const r = engine.resolveAddress(given);
    const identity = engine.allocator.get(r.identity)!;
    return { given, identity, number: r.identity, endpoint: r.endpoint, local: r.endpoint !== undefined };
  }
  let labels;
  try {
    labels = endpointLabels(given, what);
  } catch (err) {
    throw new InvalidInputError(`${what}: expected an IP address or labels like "app=web,k8s:tier=db": ${(err as Error).message}`);
  }
  const existing = engine.identityOf(labels);
  const endpoint = existing && engine.listEndpoints().find((e) => e.record.identity === existing.id)?.record.id;
  return { given, identity: existing ?? { id: 0, labels, kind: "endpoint" }, number: existing?.id, endpoint, local: true };
}

function sectionMatches(s: RuleSection, peer: Identity, port: number, proto: number): boolean {
  const peerOk = s.peers === "all" || s.peers.some((p) => peerMatches(p, peer));
  if (!peerOk) return false;
  if (s.ports === "all") return true;
  return s.ports.some((r) => {
    const protoOk = r.proto === proto || (r.proto === 0 && hasPorts(proto));
    return protoOk && (r.port === 0 || (port >= r.port && port <= r.endPort));
  });
}

function describeSection(rule: Rule, s: RuleSection): string {
  const peers = s.peers === "all" ? "any peer" : s.peers.length ? s.peers.map((p) => p.text).join(" | ") : "nobody";
  const ports = s.ports === "all" ? "any port" : s.ports.map((r) => `${r.port === 0 ? "any" : r.endPort !== r.port ? `${r.port}-${r.endPort}` : r.port}/${protoName(r.proto)}`).join(", ");
  return `${rule.policy} ${s.path} (${peers}; ${ports})`;
}

export function protoName(p: number): string {
  return p === 0 ? "ANY" : PROTO_NAMES[p] ?? String(p);
}

function traceDirection(engine: PolicyEngine, local: TraceParty, remote: TraceParty, direction: PolicyDirection, port: number, proto: number): DirectionTrace {
  const rules = engine.allRules().filter((r) => r.subject.matches(local.identity.labels));
  const enforcing = rules.filter((r) => r.enforces[direction]);
  const sections = rules.flatMap((r) => r.sections.filter((s) => s.direction === direction && sectionMatches(s, remote.identity, port, proto)).map((s) => ({ r, s })));
  const denies = sections.filter((x) => x.s.deny);
  const allows = sections.filter((x) => !x.s.deny);
  const selectedBy = [...new Set(enforcing.map((r) => `${r.policy}${r.path === "spec" ? "" : ` ${r.path}`}`))];
  let t: DirectionTrace;
  if (!enforcing.length) t = { direction, selectedBy, enforced: false, verdict: "allow", decidedBy: [], reason: `no rule selects it for ${direction}: allowed (default allow)` };
  else if (denies.length) t = { direction, selectedBy, enforced: true, verdict: "deny", decidedBy: denies.map((x) => describeSection(x.r, x.s)), reason: "denied by a deny rule (deny wins)" };
  else if (allows.length) t = { direction, selectedBy, enforced: true, verdict: "allow", decidedBy: allows.map((x) => describeSection(x.r, x.s)), reason: "allowed" };
  else t = { direction, selectedBy, enforced: true, verdict: "deny", decidedBy: [], reason: "no rule allows it: denied (default deny)" };
  if (local.endpoint !== undefined && remote.number !== undefined) {
    const ep = engine.endpoint(local.endpoint)!;
    t.table = lookup(ep.entries, direction === "ingress" ? ep.record.enforceIngress : ep.record.enforceEgress, { direction, identity: remote.number, port, proto }).verdict;
  }
  return t;
}

export function trace(engine: PolicyEngine, srcText: string, dstText: string, dport: string): Trace {
  const { port, proto } = parsePortProto(dport);
  const src = resolveParty(engine, srcText, "--src");
  const dst = resolveParty(engine, dstText, "--dst");
  const egress = src.local ? traceDirection(engine, src, dst, "egress", port, proto) : undefined;
  const ingress = dst.local ? traceDirection(engine, dst, src, "ingress", port, proto) : undefined;
  const verdict = egress?.verdict === "deny" || ingress?.verdict === "deny" ? "deny" : "allow";
  return { src, dst, port, proto, egress, ingress, verdict };
}

function partyText(p: TraceParty): string {
  const id = p.number === undefined ? "no identity yet (no endpoint has these labels)" : `identity ${p.number}${reservedName(p.number) ? ` (reserved:${reservedName(p.number)})` : ""}`;
  const ep = p.endpoint !== undefined ? `, endpoint ${p.endpoint}` : p.local ? "" : ", not a local endpoint";
  // a CIDR identity's labels are every enclosing prefix: its own prefix says it all
  const what = p.identity.prefix ? `prefix ${p.identity.prefix.text}` : `labels ${p.identity.labels.toStrings().join(",")}`;
  return `${p.given}: ${id}${ep}; ${what}`;
}

export function traceText(t: Trace): string[] {
  const lines = [`src ${partyText(t.src)}`, `dst ${partyText(t.dst)}`, `flow: new ${protoName(t.proto)} to port ${t.port}`];
  for (const [name, d] of [["egress of src", t.egress], ["ingress of dst", t.ingress]] as const) {
    if (!d) { lines.push(`${name}: not a local endpoint, no ${name.startsWith("egress") ? "egress" : "ingress"} policy`); continue; }
    lines.push(`${name}: ${d.verdict.toUpperCase()}: ${d.reason}`);
    if (d.selectedBy.length) lines.push(`  enforced by: ${d.selectedBy.join(", ")}`);
    for (const r of d.decidedBy) lines.push(`  ${d.verdict === "deny" ? "denied" : "allowed"} by: ${r}`);
    if (d.table !== undefined) lines.push(`  endpoint table: ${d.table}${d.table === d.verdict ? "" : "  (DISAGREES with the rules: a bug)"}`);
  }
  lines.push(`verdict: ${t.verdict === "allow" ? "ALLOWED" : "DENIED"}`);
  return lines;
}
