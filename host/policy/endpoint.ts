/**
 * Endpoints as given to the engine: the datapath record's fixed fields plus
 * labels, validated. A pod without a namespace label is in "default", as in
 * Kubernetes, so namespaced policies select it.
 */
import { hostPrefix } from "../packet/cidr.js";
import { LabelSet } from "../identity/labels.js";
import { NAMESPACE_KEY } from "./peers.js";
import { describe, fail, fields, string } from "./validate.js";

export interface EndpointInput {
  id: number;
  labels: LabelSet;
  ipv4?: string;
  ipv6?: string;
  ifindex: number;
  mac: string;
}

/** Cilium's endpoint ids are 16-bit; 0 is not an endpoint. */
export const MAX_ENDPOINT_ID = 65535;

/** Endpoint labels with the default namespace added when none is given. */
export function endpointLabels(v: unknown, path: string): LabelSet {
  const labels = LabelSet.parse(v, path);
  if (labels.has("any", NAMESPACE_KEY)) return labels;
  return LabelSet.of([...labels.labels, { source: "k8s", key: NAMESPACE_KEY, value: "default" }]);
}

export function parseEndpoint(v: unknown, path: string): EndpointInput {
  const o = fields(v, path, ["id", "labels", "ipv4", "ipv6", "ifindex", "mac", "identity", "enforceIngress", "enforceEgress"]);
  const id = o.id;
  if (typeof id !== "number" || !Number.isInteger(id) || id < 1 || id > MAX_ENDPOINT_ID) fail(`${path}.id`, `must be an integer 1..${MAX_ENDPOINT_ID}, got ${describe(id)}`);
  const labels = endpointLabels(o.labels ?? [], `${path}.labels`);
  const ipv4 = o.ipv4 === undefined ? undefined : string(o.ipv4, `${path}.ipv4`);
  const ipv6 = o.ipv6 === undefined ? undefined : string(o.ipv6, `${path}.ipv6`);
  if (ipv4 !== undefined && hostPrefix(ipv4, `${path}.ipv4`).family !== 4) fail(`${path}.ipv4`, `expected an IPv4 address, got ${describe(ipv4)}`);
  if (ipv6 !== undefined && hostPrefix(ipv6, `${path}.ipv6`).family !== 6) fail(`${path}.ipv6`, `expected an IPv6 address, got ${describe(ipv6)}`);
  const ifindex = o.ifindex ?? 0;
  if (typeof ifindex !== "number" || !Number.isInteger(ifindex) || ifindex < 0 || ifindex > 0x7fffffff) fail(`${path}.ifindex`, `must be a non-negative integer, got ${describe(ifindex)}`);
  const mac = o.mac === undefined ? "00:00:00:00:00:00" : string(o.mac, `${path}.mac`);
  if (!/^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/.test(mac)) fail(`${path}.mac`, `expected aa:bb:cc:dd:ee:ff, got ${describe(mac)}`);
  return { id, labels, ipv4, ipv6, ifindex, mac: mac.toLowerCase() };
}
