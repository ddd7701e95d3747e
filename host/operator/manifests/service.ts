/** Service: its cluster IPs and ports (what becomes a frontend per IP and port). */
import { dualStack, fail, ip, metadata, object, optionalArray, optionalString, port, protocol, string } from "./fields.js";
import type { ServiceManifest, ServicePort } from "./kinds.js";
import type { Obj } from "../../policy/validate.js";

export function parseService(top: Obj): ServiceManifest {
  const meta = metadata(top, true);
  const spec = object(top.spec, "spec");
  const type = spec.type === undefined ? "ClusterIP" : string(spec.type, "spec.type");
  if (type === "ExternalName") fail("spec.type", "ExternalName services have no frontend membrane can balance");
  let clusterIps: string[] = [];
  const many = optionalArray(spec.clusterIPs, "spec.clusterIPs");
  const one = spec.clusterIP;
  const headless = (v: unknown) => v === "None" || v === "" ;
  if (many && !(many.length === 1 && headless(many[0]))) {
    clusterIps = dualStack(many.map((c, i) => ip(c, `spec.clusterIPs[${i}]`)), "spec.clusterIPs");
  } else if (!many && one !== undefined && one !== null && !headless(one)) {
    clusterIps = [ip(one, "spec.clusterIP")];
  }
  const ports: ServicePort[] = (optionalArray(spec.ports, "spec.ports") ?? []).map((p, i) => {
    const o = object(p, `spec.ports[${i}]`);
    return {
      name: optionalString(o.name, `spec.ports[${i}].name`) ?? "",
      port: port(o.port, `spec.ports[${i}].port`),
      protocol: protocol(o.protocol, `spec.ports[${i}].protocol`),
    };
  });
  const seen = new Set<string>();
  ports.forEach((p, i) => {
    const key = `${p.port}/${p.protocol}`;
    if (seen.has(key)) fail(`spec.ports[${i}]`, `port ${key} appears twice`);
    seen.add(key);
    if (ports.length > 1 && p.name === "") fail(`spec.ports[${i}].name`, "required when a service has several ports");
  });
  return { kind: "Service", namespace: meta.namespace, name: meta.name, clusterIps, ports };
}
