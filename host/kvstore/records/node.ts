/** A node as agents need it (Cilium's nodes/v1): name, addresses, pod CIDRs, health IPs, encryption key. */
import { compact, integer, ip, list, object, oneOf, optionalIp, optionalPrefix, text, type Mode } from "./fields.js";

export interface NodeAddress {
  type: "InternalIP" | "ExternalIP";
  ip: string;
}

export interface NodeRecord {
  name: string;
  cluster: string;
  addresses: NodeAddress[];
  ipv4AllocCidr?: string;
  ipv6AllocCidr?: string;
  ipv4HealthIp?: string;
  ipv6HealthIp?: string;
  /** IPsec key index (SPI) the node uses; 0 = no encryption. */
  encryptionKey: number;
}

const FIELDS = ["name", "cluster", "addresses", "ipv4AllocCidr", "ipv6AllocCidr", "ipv4HealthIp", "ipv6HealthIp", "encryptionKey"];

export function readNode(v: unknown, path: string, mode: Mode): NodeRecord {
  const o = object(v, path, mode, FIELDS);
  return compact({
    name: text(o.name, `${path}.name`),
    cluster: text(o.cluster, `${path}.cluster`),
    addresses: list(o.addresses, `${path}.addresses`).map((a, i) => {
      const at = `${path}.addresses[${i}]`;
      const ao = object(a, at, mode, ["type", "ip"]);
      return { type: oneOf(ao.type, `${at}.type`, ["InternalIP", "ExternalIP"] as const), ip: ip(ao.ip, `${at}.ip`) };
    }),
    ipv4AllocCidr: optionalPrefix(o.ipv4AllocCidr, `${path}.ipv4AllocCidr`),
    ipv6AllocCidr: optionalPrefix(o.ipv6AllocCidr, `${path}.ipv6AllocCidr`),
    ipv4HealthIp: optionalIp(o.ipv4HealthIp, `${path}.ipv4HealthIp`),
    ipv6HealthIp: optionalIp(o.ipv6HealthIp, `${path}.ipv6HealthIp`),
    encryptionKey: integer(o.encryptionKey ?? 0, `${path}.encryptionKey`, 0, 15),
  });
}
