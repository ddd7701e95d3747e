/**
 * Sizes of the policy tables: the Wasm core's capacities (struct
 * policy_config) and the kernel maps' max_entries, the same numbers in both.
 */
import { POLICY_CONFIG, encodePolicyConfig } from "../generated/layout.js";

export interface PolicyOptions {
  /** Local endpoints per family (1024). Endpoint ids are 16-bit. */
  endpoints?: number;
  /** ipcache prefixes per family (16384). */
  ipcache?: number;
  /** Policy entries, every endpoint's together (16384, Cilium 1.5's per-endpoint map size). */
  entries?: number;
}

export type ResolvedPolicyOptions = Required<PolicyOptions>;

export const POLICY_DEFAULTS: ResolvedPolicyOptions = { endpoints: 1024, ipcache: 16384, entries: 16384 };

/** Upper bounds the configuration accepts. */
export const POLICY_LIMITS = { endpoints: 65535, ipcache: 1 << 24, entries: 1 << 24 } as const;

/** struct policy_config bytes. */
export function encodePolicyOptions(o: ResolvedPolicyOptions): Uint8Array {
  const bytes = new Uint8Array(POLICY_CONFIG.size);
  encodePolicyConfig({ endpointMax: o.endpoints, ipcacheMax: o.ipcache, policyMax: o.entries }, bytes);
  return bytes;
}

/** max_entries of the kernel's policy maps (bpf/lib/policy.h). */
export function policyMapSizes(o: ResolvedPolicyOptions): Record<string, number> {
  return { endpoints4: o.endpoints, endpoints6: o.endpoints, ipcache4: o.ipcache, ipcache6: o.ipcache, policy: o.entries };
}
