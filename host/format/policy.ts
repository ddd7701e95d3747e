/** Endpoints and policy entries as aligned tables (the kernel's pinned maps, or any PolicyTableStore). */
import { PROTO_NAMES } from "../conntrack/records.js";
import type { PolicyRow } from "../policy/records.js";
import { ReservedIdentity, type EndpointRecord } from "../policy/types.js";
import { renderTable } from "./table.js";

/** A local endpoint as the kernel maps hold it (the engine's record shape). */
export type EndpointListing = EndpointRecord;

const RESERVED_NAME = new Map<number, string>(Object.entries(ReservedIdentity).map(([name, id]) => [id, name]));
const PROTO_NAME: Readonly<Record<number, string>> = { 0: "any", ...PROTO_NAMES };

function identityText(id: number): string {
  if (id === 0) return "any";
  const reserved = RESERVED_NAME.get(id);
  return reserved ? `${id} (reserved:${reserved})` : String(id);
}

/** Endpoints as a table; the TEMPLATE column when any endpoint runs a templated program (`templates`: endpoint id -> template hash). */
export function formatEndpoints(rows: EndpointListing[], templates?: ReadonlyMap<number, string>): string {
  return renderTable<EndpointListing>([
    { header: "ENDPOINT", value: (r) => r.id },
    { header: "IDENTITY", value: (r) => r.identity },
    { header: "IPV4", value: (r) => r.ipv4 ?? "-" },
    { header: "IPV6", value: (r) => r.ipv6 ?? "-" },
    { header: "IFINDEX", value: (r) => r.ifindex },
    { header: "MAC", value: (r) => r.mac },
    { header: "POLICY", value: (r) => [r.enforceIngress && "ingress", r.enforceEgress && "egress"].filter(Boolean).join(",") || "disabled" },
    ...(templates?.size ? [{ header: "TEMPLATE", value: (r: EndpointListing) => templates.get(r.id)?.slice(0, 12) ?? "-" }] : []),
  ], rows);
}

export function formatPolicy(rows: PolicyRow[]): string {
  return renderTable<PolicyRow>([
    { header: "DIRECTION", value: (r) => r.direction },
    { header: "IDENTITY", value: (r) => identityText(r.identity), right: true },
    { header: "PORT", value: (r) => (r.port === 0 ? "any" : String(r.port)), right: true },
    { header: "PROTO", value: (r) => PROTO_NAME[r.proto] ?? String(r.proto) },
    { header: "VERDICT", value: (r) => (r.deny ? "deny" : "allow") },
    { header: "FLOWS", value: (r) => r.hits },
  ], rows);
}

