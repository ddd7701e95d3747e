/**
 * EndpointRecord, IpcacheRecord and PolicyEntry <-> the bytes of the policy
 * tables, through the generated encoders. Validation is complete and names the
 * field, so a writer can check everything before it writes anything.
 */
import { InvalidInputError } from "../errors.js";
import { formatIp, formatMac, ipv4Word, parseIp, parseMac } from "../packet/address.js";
import {
  CtDir, EndpointFlags, ENDPOINT_INFO, ENDPOINT_KEY4, ENDPOINT_KEY6, IPCACHE_KEY4, IPCACHE_KEY6, IPCACHE_VALUE,
  POLICY_ENTRY, POLICY_KEY, decodeEndpointInfo, decodeIpcacheKey4, decodeIpcacheKey6, decodeIpcacheValue,
  decodePolicyEntry, decodePolicyKey, encodeEndpointInfo, encodeEndpointKey4, encodeEndpointKey6,
  encodeIpcacheKey4, encodeIpcacheKey6, encodeIpcacheValue, encodePolicyEntry, encodePolicyKey,
} from "../generated/layout.js";
import type { PolicyTableName } from "./tables.js";
import type { EndpointRecord, IpcacheRecord, PolicyDirection, PolicyEntry, PolicyProto } from "./types.js";
import { hasPorts, IpProto } from "../packet/ip-proto.js";
import { readCidr } from "../packet/cidr.js";
import { integerInRange } from "../config-values.js";

export interface TableRecord {
  table: PolicyTableName;
  key: Uint8Array;
  value: Uint8Array;
}

/** 0 (any protocol) or one the datapaths handle. */
const PROTOS: readonly number[] = [0, ...Object.values(IpProto)];
const MAX_ENDPOINT_ID = 0xffff;


function address(text: unknown, what: string): { family: 4 | 6; bytes: Uint8Array } {
  if (typeof text !== "string") throw new InvalidInputError(`${what}: expected an address string, got ${JSON.stringify(text)}`);
  try {
    return parseIp(text);
  } catch (err) {
    throw new InvalidInputError(`${what}: ${(err as Error).message}`, { cause: err });
  }
}

function encode<T>(size: number, fn: (v: T, b: Uint8Array) => void, value: T): Uint8Array {
  const bytes = new Uint8Array(size);
  fn(value, bytes);
  return bytes;
}

/** The endpoint's records (one per address family it has). */
export function endpointRecords(ep: EndpointRecord, what = `endpoint ${JSON.stringify(ep?.id)}`): TableRecord[] {
  if (typeof ep !== "object" || ep === null) throw new InvalidInputError(`${what}: expected an object`);
  const id = integerInRange(ep.id, 1, MAX_ENDPOINT_ID, `${what}: id`);
  const sec = integerInRange(ep.identity, 1, 0xffffffff, `${what}: identity`);
  const ifindex = integerInRange(ep.ifindex, 0, 0xffffffff, `${what}: ifindex`);
  let mac: Uint8Array;
  try {
    mac = parseMac(String(ep.mac));
  } catch (err) {
    throw new InvalidInputError(`${what}: mac: ${(err as Error).message}`, { cause: err });
  }
  for (const f of ["enforceIngress", "enforceEgress"] as const) {
    if (typeof ep[f] !== "boolean") throw new InvalidInputError(`${what}: ${f}: expected true or false, got ${JSON.stringify(ep[f])}`);
  }
  if (ep.ipv4 === undefined && ep.ipv6 === undefined) throw new InvalidInputError(`${what}: needs ipv4, ipv6 or both`);
  const flags = (ep.enforceIngress ? EndpointFlags.ENDPOINT_F_ENFORCE_INGRESS : 0) | (ep.enforceEgress ? EndpointFlags.ENDPOINT_F_ENFORCE_EGRESS : 0);
  const value = encode(ENDPOINT_INFO.size, encodeEndpointInfo, { secId: sec, ifindex, id, mac, flags });
  const out: TableRecord[] = [];
  if (ep.ipv4 !== undefined) {
    const a = address(ep.ipv4, `${what}: ipv4`);
    if (a.family !== 4) throw new InvalidInputError(`${what}: ipv4: "${ep.ipv4}" is not an IPv4 address`);
    const key = encode(ENDPOINT_KEY4.size, encodeEndpointKey4, { addr: ipv4Word(a.bytes) });
    out.push({ table: "endpoints4", key, value });
  }
  if (ep.ipv6 !== undefined) {
    const a = address(ep.ipv6, `${what}: ipv6`);
    if (a.family !== 6) throw new InvalidInputError(`${what}: ipv6: "${ep.ipv6}" is not an IPv6 address`);
    out.push({ table: "endpoints6", key: encode(ENDPOINT_KEY6.size, encodeEndpointKey6, { addr: a.bytes }), value });
  }
  return out;
}

/** Parses "addr/len" (a bare address means the host prefix). Bits past the prefix must be zero. */
export function parseCidr(cidr: unknown, what: string): { family: 4 | 6; bytes: Uint8Array; prefixlen: number } {
  const r = readCidr(cidr, { bareAddress: true });
  if ("prefix" in r) return { family: r.prefix.family, bytes: r.prefix.bytes, prefixlen: r.prefix.length };
  const p = r.problem;
  switch (p.kind) {
    case "type": throw new InvalidInputError(`${what}: expected a CIDR string, got ${JSON.stringify(cidr)}`);
    case "syntax": throw new InvalidInputError(`${what}: "${cidr as string}" has more than one "/"`);
    case "address": throw new InvalidInputError(`${what}: ${p.message}`);
    case "length": throw new InvalidInputError(`${what}: prefix length "${p.length}" of "${cidr as string}" must be 0..${p.max}`);
    case "host-bits": throw new InvalidInputError(`${what}: "${cidr as string}" has bits set past its /${p.length} prefix`);
  }
}

export function ipcacheRecord(rec: IpcacheRecord, what = `ipcache ${JSON.stringify(rec?.cidr)}`): TableRecord {
  if (typeof rec !== "object" || rec === null) throw new InvalidInputError(`${what}: expected an object`);
  const c = parseCidr(rec.cidr, `${what}: cidr`);
  const secId = integerInRange(rec.identity, 1, 0xffffffff, `${what}: identity`);
  const value = encode(IPCACHE_VALUE.size, encodeIpcacheValue, { secId });
  if (c.family === 4) {
    const key = encode(IPCACHE_KEY4.size, encodeIpcacheKey4, { prefixlen: c.prefixlen, addr: ipv4Word(c.bytes) });
    return { table: "ipcache4", key, value };
  }
  return { table: "ipcache6", key: encode(IPCACHE_KEY6.size, encodeIpcacheKey6, { prefixlen: c.prefixlen, addr: c.bytes }), value };
}

const DIRECTION_CODE: Record<PolicyDirection, number> = { egress: CtDir.CT_EGRESS, ingress: CtDir.CT_INGRESS };

/** The policy table key of `entry` for endpoint `endpointId`. */
export function policyKey(endpointId: number, entry: Omit<PolicyEntry, "deny">, what = "policy entry"): Uint8Array {
  if (typeof entry !== "object" || entry === null) throw new InvalidInputError(`${what}: expected an object`);
  integerInRange(endpointId, 1, MAX_ENDPOINT_ID, `${what}: endpoint id`);
  const secId = integerInRange(entry.identity, 0, 0xffffffff, `${what}: identity`);
  const dport = integerInRange(entry.port, 0, 0xffff, `${what}: port`);
  if (!PROTOS.includes(entry.proto as number)) throw new InvalidInputError(`${what}: proto: expected one of ${PROTOS.join(", ")}, got ${JSON.stringify(entry.proto)}`);
  if (!Object.hasOwn(DIRECTION_CODE, entry.direction)) throw new InvalidInputError(`${what}: direction: expected "ingress" or "egress", got ${JSON.stringify(entry.direction)}`);
  if (dport !== 0 && !hasPorts(entry.proto) && entry.proto !== 0) {
    throw new InvalidInputError(`${what}: port ${dport} with protocol ${entry.proto}: only TCP and UDP (or any protocol) have ports`);
  }
  return encode(POLICY_KEY.size, encodePolicyKey, { secId, endpointId, dport, proto: entry.proto, dir: DIRECTION_CODE[entry.direction] });
}

export function policyValue(deny: boolean, what = "policy entry"): Uint8Array {
  if (typeof deny !== "boolean") throw new InvalidInputError(`${what}: deny: expected true or false, got ${JSON.stringify(deny)}`);
  return encode(POLICY_ENTRY.size, encodePolicyEntry, { hits: 0n, proxyPort: 0, deny: deny ? 1 : 0 });
}

// ---- decoding, for listings ----

export interface EndpointRow {
  address: string;
  id: number;
  identity: number;
  ifindex: number;
  mac: string;
  enforceIngress: boolean;
  enforceEgress: boolean;
}

export function decodeEndpointRow(table: "endpoints4" | "endpoints6", key: Uint8Array, value: Uint8Array): EndpointRow {
  const info = decodeEndpointInfo(value);
  const address = formatIp(table === "endpoints4" ? key.subarray(0, 4) : key.subarray(0, 16));
  return {
    address, id: info.id, identity: info.secId, ifindex: info.ifindex, mac: formatMac(info.mac),
    enforceIngress: (info.flags & EndpointFlags.ENDPOINT_F_ENFORCE_INGRESS) !== 0,
    enforceEgress: (info.flags & EndpointFlags.ENDPOINT_F_ENFORCE_EGRESS) !== 0,
  };
}

export function decodeIpcacheRow(table: "ipcache4" | "ipcache6", key: Uint8Array, value: Uint8Array): IpcacheRecord {
  const k = table === "ipcache4" ? decodeIpcacheKey4(key) : decodeIpcacheKey6(key);
  const addr = table === "ipcache4" ? key.subarray(4, 8) : key.subarray(4, 20);
  return { cidr: `${formatIp(addr)}/${k.prefixlen}`, identity: decodeIpcacheValue(value).secId };
}

export interface PolicyRow extends PolicyEntry {
  endpointId: number;
  hits: number;
}

export function decodePolicyRow(key: Uint8Array, value: Uint8Array): PolicyRow {
  const k = decodePolicyKey(key);
  const v = decodePolicyEntry(value);
  return {
    endpointId: k.endpointId, identity: k.secId, port: k.dport, proto: k.proto as PolicyProto,
    direction: k.dir === CtDir.CT_INGRESS ? "ingress" : "egress", deny: v.deny !== 0, hits: Number(v.hits),
  };
}
