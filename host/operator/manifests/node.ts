/** Node: name, labels, addresses and pod CIDRs. */
import { array, cidr, dualStack, fail, family, ip, metadata, object, optionalArray, string } from "./fields.js";
import type { NodeManifest } from "./kinds.js";
import type { Obj } from "../../policy/validate.js";

export function parseNode(top: Obj): NodeManifest {
  const meta = metadata(top, false);
  const spec = top.spec === undefined || top.spec === null ? {} : object(top.spec, "spec");
  let podCidrs: string[] = [];
  const many = optionalArray(spec.podCIDRs, "spec.podCIDRs");
  if (many) podCidrs = many.map((c, i) => cidr(c, `spec.podCIDRs[${i}]`));
  else if (spec.podCIDR !== undefined && spec.podCIDR !== null) podCidrs = [cidr(spec.podCIDR, "spec.podCIDR")];
  dualStack(podCidrs, many ? "spec.podCIDRs" : "spec.podCIDR");
  if (many && spec.podCIDR !== undefined && spec.podCIDR !== null && cidr(spec.podCIDR, "spec.podCIDR") !== podCidrs[0]) {
    fail("spec.podCIDR", "must equal spec.podCIDRs[0] when both are given");
  }

  // InternalIP wins over ExternalIP per family, as Cilium picks the node's address.
  const addresses: NodeManifest["addresses"] = {};
  const status = top.status === undefined || top.status === null ? {} : object(top.status, "status");
  const ranked: Record<4 | 6, { rank: number; ip: string }> = { 4: { rank: 9, ip: "" }, 6: { rank: 9, ip: "" } };
  (optionalArray(status.addresses, "status.addresses") ?? []).forEach((a, i) => {
    const o = object(a, `status.addresses[${i}]`);
    const type = string(o.type, `status.addresses[${i}].type`);
    if (type !== "InternalIP" && type !== "ExternalIP") return; // Hostname, InternalDNS...: not addresses membrane routes to
    const addr = ip(o.address, `status.addresses[${i}].address`);
    const rank = type === "InternalIP" ? 0 : 1;
    const f = family(addr);
    if (rank < ranked[f].rank) ranked[f] = { rank, ip: addr };
  });
  if (ranked[4].ip) addresses.ipv4 = ranked[4].ip;
  if (ranked[6].ip) addresses.ipv6 = ranked[6].ip;
  void array;
  return { kind: "Node", name: meta.name, labels: meta.labels, addresses, podCidrs };
}
