/** Pod: where it runs, its labels and its addresses. */
import { dualStack, fail, ip, metadata, object, objectName, optionalArray } from "./fields.js";
import type { PodManifest } from "./kinds.js";
import type { Obj } from "../../policy/validate.js";

export function parsePod(top: Obj): PodManifest {
  const meta = metadata(top, true);
  const spec = object(top.spec, "spec");
  if (spec.nodeName === undefined || spec.nodeName === null) fail("spec.nodeName", "required: membrane has no scheduler, a pod names its node");
  const nodeName = objectName(spec.nodeName, "spec.nodeName");
  const status = top.status === undefined || top.status === null ? {} : object(top.status, "status");
  let ips: string[] = [];
  const many = optionalArray(status.podIPs, "status.podIPs");
  if (many) {
    ips = many.map((entry, i) => ip(object(entry, `status.podIPs[${i}]`).ip, `status.podIPs[${i}].ip`));
    dualStack(ips, "status.podIPs");
  } else if (status.podIP !== undefined && status.podIP !== null) {
    ips = [ip(status.podIP, "status.podIP")];
  }
  if (many && status.podIP !== undefined && status.podIP !== null && ip(status.podIP, "status.podIP") !== ips[0]) {
    fail("status.podIP", "must equal status.podIPs[0].ip when both are given");
  }
  return { kind: "Pod", namespace: meta.namespace, name: meta.name, labels: meta.labels, nodeName, ips };
}
