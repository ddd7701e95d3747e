// Shared builders for the policy suites: endpoints and policy documents in a few words.
import { LabelSet } from "../../host/identity/labels.js";
import { endpointLabels, type EndpointInput } from "../../host/policy/endpoint.js";
import { parseDocuments, type PolicyDocument } from "../../host/policy/document.js";
import { lookup, type LookupResult } from "../../host/policy/compute.js";
import type { PolicyEngine } from "../../host/policy/engine.js";
import type { Datapath } from "../../host/datapath.js";
import { POLICY_TABLE_NAMES } from "../../host/policy/tables.js";
import { POLICY_ENTRY } from "../../host/generated/layout.js";

export function ep(id: number, labels: Record<string, string> | string[], extra: Partial<EndpointInput> = {}): EndpointInput {
  return { id, labels: endpointLabels(labels, "labels"), ifindex: id, mac: "02:00:00:00:00:01", ipv4: `10.0.${id >> 8}.${id & 255}`, ...extra };
}

export function labels(l: Record<string, string> | string[]): LabelSet {
  return LabelSet.parse(l);
}

export function cnp(name: string, spec: unknown, namespace = "default"): PolicyDocument {
  return parseDocuments({ apiVersion: "cilium.io/v2", kind: "CiliumNetworkPolicy", metadata: { name, namespace }, spec })[0]!;
}

export function knp(name: string, spec: unknown, namespace = "default"): PolicyDocument {
  return parseDocuments({ apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name, namespace }, spec })[0]!;
}

/** The verdict endpoint `id`'s table gives a new flow with the remote identity. */
export function verdict(engine: PolicyEngine, id: number, direction: "ingress" | "egress", identity: number, port: number, proto: number): LookupResult["verdict"] {
  const e = engine.endpoint(id)!;
  const enforced = direction === "ingress" ? e.record.enforceIngress : e.record.enforceEgress;
  return lookup(e.entries, enforced, { direction, identity, port, proto }).verdict;
}

export function identityOf(engine: PolicyEngine, id: number): number {
  return engine.endpoint(id)!.record.identity;
}

/** Every policy table of `dp` as sorted key=value hex, hit counters zeroed: what two ways of programming must agree on. */
export function tableContents(dp: Datapath): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const t of POLICY_TABLE_NAMES) {
    out[t] = dp.policyTables().dump(t).map(([k, v]) => {
      const value = v.slice();
      if (t === "policy") value.fill(0, POLICY_ENTRY.offsets.hits, POLICY_ENTRY.offsets.hits + 8);
      return `${Buffer.from(k).toString("hex")}=${Buffer.from(value).toString("hex")}`;
    }).sort();
  }
  return out;
}
