/** An endpoint (pod) as other agents need it: where it runs, its addresses and its security identity. */
import { compact, fail, integer, object, optionalIp, text, type Mode } from "./fields.js";

export interface EndpointRecord {
  cluster: string;
  namespace: string;
  name: string;
  node: string;
  ipv4?: string;
  ipv6?: string;
  identity: number;
}

export function readEndpoint(v: unknown, path: string, mode: Mode): EndpointRecord {
  const o = object(v, path, mode, ["cluster", "namespace", "name", "node", "ipv4", "ipv6", "identity"]);
  const record = compact({
    cluster: text(o.cluster, `${path}.cluster`),
    namespace: text(o.namespace, `${path}.namespace`),
    name: text(o.name, `${path}.name`),
    node: text(o.node, `${path}.node`),
    ipv4: optionalIp(o.ipv4, `${path}.ipv4`),
    ipv6: optionalIp(o.ipv6, `${path}.ipv6`),
    identity: integer(o.identity, `${path}.identity`, 1, 0xffffffff),
  });
  if (record.ipv4 === undefined && record.ipv6 === undefined) fail(path, "an endpoint needs ipv4 or ipv6");
  return record;
}
