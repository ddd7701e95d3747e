/**
 * The contract between the policy engine (rules, selectors, identities,
 * incremental regeneration) and the datapath writers (Wasm tables and kernel
 * maps). The engine decides WHAT each endpoint's policy table holds; the
 * writers decide HOW those records are encoded (bpf/include/types/policy.h).
 */
import type { IpProto } from "../generated/layout.js";

export type PolicyDirection = "ingress" | "egress";

/** IANA protocol numbers the policy understands; 0 = any protocol. */
export type PolicyProto = 0 | IpProto;

/**
 * One entry of an endpoint's policy table: traffic with the remote security
 * identity `identity` (0 = any), destination port `port` (0 = any, host order)
 * and protocol `proto` (0 = any) in `direction` is allowed, or denied when
 * `deny` is set (a deny entry wins over any allow that matches the same packet).
 */
export interface PolicyEntry {
  identity: number;
  port: number;
  proto: PolicyProto;
  direction: PolicyDirection;
  deny: boolean;
}

/** A local endpoint as the datapath sees it. */
export interface EndpointRecord {
  id: number;
  identity: number;
  ipv4?: string;
  ipv6?: string;
  ifindex: number;
  mac: string;
  /** Whether ingress / egress policy is enforced (no rule selecting it: allow all, as Kubernetes). */
  enforceIngress: boolean;
  enforceEgress: boolean;
}

/** One prefix of the ipcache: addresses in `cidr` belong to `identity` (longest prefix wins). */
export interface IpcacheRecord {
  cidr: string;
  identity: number;
}

/** Reserved identities, numbered as in Cilium. */
export const ReservedIdentity = {
  unknown: 0,
  host: 1,
  world: 2,
  unmanaged: 3,
  health: 4,
  init: 5,
} as const;

/**
 * What a change to the rule set did: the endpoints whose tables were
 * recomputed and, per endpoint, the entries to add and to remove. Writers apply
 * exactly this diff.
 */
export interface PolicyDiff {
  recomputed: number[];
  changes: Map<number, { add: PolicyEntry[]; remove: PolicyEntry[] }>;
}
