/** A datapath's endpoints and one endpoint's policy entries, read back from any PolicyTableStore (Wasm, kernel, pinned). */
import { decodeEndpointRow, decodePolicyRow, type EndpointRow, type PolicyRow } from "./records.js";
import type { PolicyTableStore } from "./tables.js";
import type { EndpointRecord } from "./types.js";

/** A local endpoint as the tables hold it (the engine's record shape). */
export type EndpointListing = EndpointRecord;

/** Endpoints by id, both families' addresses merged. */
export function listEndpoints(store: PolicyTableStore): EndpointListing[] {
  const byId = new Map<number, EndpointListing>();
  const add = (row: EndpointRow, family: "ipv4" | "ipv6") => {
    const { address, ...rest } = row;
    const e = byId.get(row.id) ?? { ...rest };
    e[family] = address;
    byId.set(row.id, e);
  };
  for (const [k, v] of store.dump("endpoints4")) add(decodeEndpointRow("endpoints4", k, v), "ipv4");
  for (const [k, v] of store.dump("endpoints6")) add(decodeEndpointRow("endpoints6", k, v), "ipv6");
  return [...byId.values()].sort((a, b) => a.id - b.id);
}

/** One endpoint's policy entries, ingress first, then by identity, port and protocol. */
export function endpointPolicy(store: PolicyTableStore, endpointId: number): PolicyRow[] {
  return store.dump("policy").map(([k, v]) => decodePolicyRow(k, v)).filter((r) => r.endpointId === endpointId)
    .sort((a, b) => a.direction.localeCompare(b.direction) * -1 || a.identity - b.identity || a.port - b.port || a.proto - b.proto);
}

