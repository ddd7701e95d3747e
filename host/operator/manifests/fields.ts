/**
 * Readers for the parts of Kubernetes objects membrane reads: metadata,
 * labels, addresses and ports. Each throws an InvalidInputError whose message
 * starts with the field path (host/policy/validate.ts does the same for rules).
 */
import { array, describe, fail, object, objectName, optionalArray, string, type Obj } from "../../policy/validate.js";
import { checkKey, checkValue } from "../../identity/labels.js";
import { formatIp, parseIp } from "../../packet/address.js";
import { parsePrefix } from "../../packet/cidr.js";
import type { Labels, Protocol } from "./kinds.js";

export interface Metadata {
  name: string;
  namespace: string;
  labels: Labels;
}

/** metadata.name, .namespace ("default" when absent, none for cluster-scoped kinds) and .labels. */
export function metadata(top: Obj, namespaced: boolean): Metadata {
  const meta = object(top.metadata, "metadata");
  const name = objectName(meta.name, "metadata.name");
  let namespace = "";
  if (namespaced) namespace = meta.namespace === undefined ? "default" : objectName(meta.namespace, "metadata.namespace");
  else if (meta.namespace !== undefined) fail("metadata.namespace", `a ${String(top.kind)} has no namespace`);
  return { name, namespace, labels: labels(meta.labels, "metadata.labels") };
}

export function labels(v: unknown, path: string): Labels {
  if (v === undefined || v === null) return {};
  const o = object(v, path);
  const out: Labels = {};
  for (const [k, value] of Object.entries(o)) {
    checkKey(k, `${path}.${k}`);
    const text = string(value, `${path}.${k}`);
    checkValue(text, `${path}.${k}`);
    out[k] = text;
  }
  return out;
}

/** An IP address in canonical text ("10.0.0.1", "fd00::1"). */
export function ip(v: unknown, path: string): string {
  const text = string(v, path);
  try {
    return canonicalIp(text);
  } catch (err) {
    fail(path, `${describe(text)} is not an IP address: ${(err as Error).message}`);
  }
}

function canonicalIp(text: string): string {
  return formatIp(parseIp(text).bytes);
}

export function family(ipText: string): 4 | 6 {
  return ipText.includes(":") ? 6 : 4;
}

/** A list of addresses with at most one per family (dual stack), as Kubernetes allows. */
export function dualStack(values: string[], path: string): string[] {
  const seen = new Set<number>();
  values.forEach((a, i) => {
    const f = family(a);
    if (seen.has(f)) fail(`${path}[${i}]`, `a second IPv${f} address (${a}): at most one per family`);
    seen.add(f);
  });
  return values;
}

export function cidr(v: unknown, path: string): string {
  return parsePrefix(v, path).text;
}

export function port(v: unknown, path: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > 65535) fail(path, `expected a port 1..65535, got ${describe(v)}`);
  return v;
}

/** TCP (the default) or UDP; SCTP is refused with a message rather than dropped silently. */
export function protocol(v: unknown, path: string): Protocol {
  if (v === undefined || v === null) return "TCP";
  if (v === "TCP" || v === "UDP") return v;
  if (v === "SCTP") fail(path, "SCTP is not supported by membrane's load-balancer");
  fail(path, `expected TCP or UDP, got ${describe(v)}`);
}

export function optionalString(v: unknown, path: string): string | undefined {
  return v === undefined || v === null ? undefined : string(v, path);
}

export { array, object, optionalArray, string, fail, describe, objectName };
