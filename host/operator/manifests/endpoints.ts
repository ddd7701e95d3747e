/**
 * EndpointSlice (discovery.k8s.io/v1) and the older Endpoints (v1): the
 * backends of a service. Both become the same reduced shape; a service's
 * backends are the union of its slices.
 */
import { fail, ip, metadata, object, objectName, optionalArray, optionalString, port, protocol, string } from "./fields.js";
import type { EndpointAddress, EndpointPort, EndpointsManifest } from "./kinds.js";
import type { Obj } from "../../policy/validate.js";

const SERVICE_NAME_LABEL = "kubernetes.io/service-name";

function endpointPorts(v: unknown, path: string): EndpointPort[] {
  return (optionalArray(v, path) ?? []).map((p, i) => {
    const o = object(p, `${path}[${i}]`);
    return {
      name: optionalString(o.name, `${path}[${i}].name`) ?? "",
      port: port(o.port, `${path}[${i}].port`),
      protocol: protocol(o.protocol, `${path}[${i}].protocol`),
    };
  });
}

export function parseEndpointSlice(top: Obj): EndpointsManifest {
  const meta = metadata(top, true);
  const serviceName = meta.labels[SERVICE_NAME_LABEL];
  if (serviceName === undefined) fail(`metadata.labels`, `"${SERVICE_NAME_LABEL}" is required: it names the slice's service`);
  const addressType = string(top.addressType, "addressType");
  if (addressType !== "IPv4" && addressType !== "IPv6") fail("addressType", `expected IPv4 or IPv6, got ${JSON.stringify(addressType)}`);
  const want = addressType === "IPv4" ? 4 : 6;
  const endpoints: EndpointAddress[] = [];
  (optionalArray(top.endpoints, "endpoints") ?? []).forEach((e, i) => {
    const o = object(e, `endpoints[${i}]`);
    const conditions = o.conditions === undefined || o.conditions === null ? {} : object(o.conditions, `endpoints[${i}].conditions`);
    if (conditions.ready !== undefined && conditions.ready !== null && typeof conditions.ready !== "boolean") {
      fail(`endpoints[${i}].conditions.ready`, "expected true or false");
    }
    const ready = conditions.ready !== false;
    const nodeName = o.nodeName === undefined || o.nodeName === null ? undefined : objectName(o.nodeName, `endpoints[${i}].nodeName`);
    const addresses = optionalArray(o.addresses, `endpoints[${i}].addresses`) ?? [];
    if (addresses.length === 0) fail(`endpoints[${i}].addresses`, "at least one address is required");
    addresses.forEach((a, j) => {
      const addr = ip(a, `endpoints[${i}].addresses[${j}]`);
      if ((addr.includes(":") ? 6 : 4) !== want) fail(`endpoints[${i}].addresses[${j}]`, `${addr} is not an ${addressType} address (addressType)`);
      endpoints.push({ ip: addr, ready, ...(nodeName ? { nodeName } : {}) });
    });
  });
  return { kind: "EndpointSlice", namespace: meta.namespace, name: meta.name, serviceName, endpoints, ports: endpointPorts(top.ports, "ports") };
}

/** Endpoints: subsets of addresses (ready) and notReadyAddresses, each subset with its ports. Only one port set is supported. */
export function parseEndpoints(top: Obj): EndpointsManifest {
  const meta = metadata(top, true);
  const subsets = optionalArray(top.subsets, "subsets") ?? [];
  const endpoints: EndpointAddress[] = [];
  let ports: EndpointPort[] = [];
  subsets.forEach((s, i) => {
    const o = object(s, `subsets[${i}]`);
    const these = endpointPorts(o.ports, `subsets[${i}].ports`);
    if (i > 0 && JSON.stringify(these) !== JSON.stringify(ports)) fail(`subsets[${i}].ports`, "subsets with different ports are not supported: use EndpointSlices");
    ports = these;
    const read = (list: unknown, key: string, ready: boolean) =>
      (optionalArray(list, `subsets[${i}].${key}`) ?? []).forEach((a, j) => {
        const ao = object(a, `subsets[${i}].${key}[${j}]`);
        const nodeName = ao.nodeName === undefined || ao.nodeName === null ? undefined : objectName(ao.nodeName, `subsets[${i}].${key}[${j}].nodeName`);
        endpoints.push({ ip: ip(ao.ip, `subsets[${i}].${key}[${j}].ip`), ready, ...(nodeName ? { nodeName } : {}) });
      });
    read(o.addresses, "addresses", true);
    read(o.notReadyAddresses, "notReadyAddresses", false);
  });
  return { kind: "Endpoints", namespace: meta.namespace, name: meta.name, serviceName: meta.name, endpoints, ports };
}
