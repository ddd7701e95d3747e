/** A service as agents need it (Cilium's services/v1): frontends and backends, nothing of the manifest besides. */
import { compact, integer, ip, list, object, oneOf, optionalText, text, type Mode } from "./fields.js";

export type L4Protocol = "TCP" | "UDP";

export interface ServicePort {
  ip: string;
  port: number;
  protocol: L4Protocol;
  /** Port name, to match a frontend's target port to backends'. */
  name?: string;
}

export interface ServiceRecord {
  cluster: string;
  namespace: string;
  name: string;
  frontends: ServicePort[];
  backends: ServicePort[];
}

function readPort(v: unknown, path: string, mode: Mode): ServicePort {
  const o = object(v, path, mode, ["ip", "port", "protocol", "name"]);
  return compact({
    ip: ip(o.ip, `${path}.ip`),
    port: integer(o.port, `${path}.port`, 1, 65535),
    protocol: oneOf(o.protocol ?? "TCP", `${path}.protocol`, ["TCP", "UDP"] as const),
    name: optionalText(o.name, `${path}.name`),
  });
}

export function readService(v: unknown, path: string, mode: Mode): ServiceRecord {
  const o = object(v, path, mode, ["cluster", "namespace", "name", "frontends", "backends"]);
  return {
    cluster: text(o.cluster, `${path}.cluster`),
    namespace: text(o.namespace, `${path}.namespace`),
    name: text(o.name, `${path}.name`),
    frontends: list(o.frontends, `${path}.frontends`).map((p, i) => readPort(p, `${path}.frontends[${i}]`, mode)),
    backends: list(o.backends ?? [], `${path}.backends`).map((p, i) => readPort(p, `${path}.backends[${i}]`, mode)),
  };
}
