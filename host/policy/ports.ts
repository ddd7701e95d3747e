/**
 * Destination ports of rules, as NetworkPolicy (`ports`) and
 * CiliumNetworkPolicy (`toPorts[].ports`) write them, validated into
 * PortRanges. Named ports are refused: endpoints here carry no port names.
 */
import type { PolicyProto } from "./types.js";
import type { PortRange } from "./rule.js";
import { describe, fail, fields, string } from "./validate.js";
import { IpProto, isIcmpProto } from "../packet/ip-proto.js";

/** endPort ranges are expanded into one entry per port; this bounds the table a single rule can fill. */
export const MAX_PORT_RANGE = 1024;

const PROTOCOLS: Record<string, PolicyProto> = {
  TCP: IpProto.PROTO_TCP, UDP: IpProto.PROTO_UDP, ICMP: IpProto.PROTO_ICMP, ICMPV6: IpProto.PROTO_ICMPV6, ANY: 0,
};

function protocol(v: unknown, path: string, allowed: string[]): PolicyProto {
  const s = string(v, path);
  if (s.toUpperCase() === "SCTP") fail(path, "SCTP is not supported by membrane's datapath");
  if (!allowed.includes(s)) fail(path, `expected one of ${allowed.join(", ")}, got ${describe(v)}`);
  return PROTOCOLS[s.toUpperCase()]!;
}

function portNumber(v: unknown, path: string, min: number): number {
  let n: number;
  if (typeof v === "number") n = v;
  else if (typeof v === "string" && /^[0-9]+$/.test(v)) n = Number(v);
  else if (typeof v === "string") fail(path, `named ports (${describe(v)}) are not supported: give the number`);
  else fail(path, `expected a port number, got ${describe(v)}`);
  if (!Number.isInteger(n) || n < min || n > 65535) fail(path, `must be ${min}..65535${min === 0 ? " (0: every port)" : ""}, got ${describe(v)}`);
  return n;
}

function range(proto: PolicyProto, port: number, endPortValue: unknown, path: string): PortRange {
  if (isIcmpProto(proto) && port !== 0) fail(`${path}.port`, "ICMP has no ports: leave it out or give 0");
  let endPort = port;
  if (endPortValue !== undefined && endPortValue !== null) {
    if (port === 0) fail(`${path}.endPort`, "needs a port to start the range");
    endPort = portNumber(endPortValue, `${path}.endPort`, 1);
    if (endPort < port) fail(`${path}.endPort`, `must not be below port (${port}), got ${endPort}`);
    if (endPort - port + 1 > MAX_PORT_RANGE) fail(`${path}.endPort`, `a range may span at most ${MAX_PORT_RANGE} ports, got ${endPort - port + 1}`);
  }
  return { proto, port, endPort };
}

/** NetworkPolicy `ports[i]`: protocol TCP (default) or UDP, port 1..65535 or absent (every port), endPort. */
export function parseK8sPort(v: unknown, path: string): PortRange {
  const o = fields(v, path, ["protocol", "port", "endPort"]);
  const proto = o.protocol === undefined || o.protocol === null ? IpProto.PROTO_TCP : protocol(o.protocol, `${path}.protocol`, ["TCP", "UDP"]);
  const port = o.port === undefined || o.port === null ? 0 : portNumber(o.port, `${path}.port`, 1);
  return range(proto, port, o.endPort, path);
}

/**
 * CiliumNetworkPolicy `toPorts[i].ports[j]`: port "80" or 80 (0 or absent:
 * every port), protocol ANY (default: TCP and UDP, as Cilium), TCP, UDP, and
 * ICMP / ICMPv6 without port (membrane's addition: all ICMP types).
 */
export function parseCiliumPort(v: unknown, path: string): PortRange {
  const o = fields(v, path, ["port", "protocol", "endPort"]);
  const proto = o.protocol === undefined || o.protocol === null ? 0 : protocol(o.protocol, `${path}.protocol`, ["TCP", "UDP", "ANY", "ICMP", "ICMPv6"]);
  const port = o.port === undefined || o.port === null ? 0 : portNumber(o.port, `${path}.port`, 0);
  return range(proto, port, o.endPort, path);
}

/** The (port, proto) pairs of entries a range stands for: ANY means TCP and UDP, as in Cilium. */
export function expandPorts(r: PortRange): { port: number; proto: PolicyProto }[] {
  const protos: PolicyProto[] = r.proto === 0 ? [IpProto.PROTO_TCP, IpProto.PROTO_UDP] : [r.proto];
  const out: { port: number; proto: PolicyProto }[] = [];
  for (const proto of protos) for (let p = r.port; p <= r.endPort; p++) out.push({ port: p, proto });
  return out;
}
