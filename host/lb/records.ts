/** LB table records: keys and values encoded through the generated layouts, and decoded for listings. */
import {
  LB4_BACKEND, LB4_KEY, LB4_REVERSE_NAT, LB6_BACKEND, LB6_KEY, LB6_REVERSE_NAT, LB_SERVICE, decodeLb4Backend,
  decodeLb4Key, decodeLb4ReverseNat, decodeLb6Backend, decodeLb6Key, decodeLb6ReverseNat, decodeLbService,
  encodeLb4Backend, encodeLb4Key, encodeLb4ReverseNat, encodeLb6Backend, encodeLb6Key, encodeLb6ReverseNat,
  encodeLbService, type LbService,
} from "../generated/layout.js";
import { formatIp, ipv4Word, type IpFamily } from "../packet/address.js";

const bytes4 = (v: number) => Uint8Array.of(v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255);

export function serviceKey(family: IpFamily, vip: Uint8Array, port: number, proto: number, slot: number): Uint8Array {
  if (family === 4) {
    const k = new Uint8Array(LB4_KEY.size);
    encodeLb4Key({ address: ipv4Word(vip), dport: port, slot, proto }, k);
    return k;
  }
  const k = new Uint8Array(LB6_KEY.size);
  encodeLb6Key({ address: vip, dport: port, slot, proto }, k);
  return k;
}

export function serviceValue(v: LbService): Uint8Array {
  const b = new Uint8Array(LB_SERVICE.size);
  encodeLbService(v, b);
  return b;
}

export function idKey(id: number, size: 2 | 4): Uint8Array {
  const k = new Uint8Array(size);
  const v = new DataView(k.buffer);
  if (size === 4) v.setUint32(0, id, true);
  else v.setUint16(0, id, true);
  return k;
}

export function backendValue(family: IpFamily, addr: Uint8Array, port: number, proto: number): Uint8Array {
  if (family === 4) {
    const b = new Uint8Array(LB4_BACKEND.size);
    encodeLb4Backend({ address: ipv4Word(addr), port, proto }, b);
    return b;
  }
  const b = new Uint8Array(LB6_BACKEND.size);
  encodeLb6Backend({ address: addr, port, proto }, b);
  return b;
}

export function revNatValue(family: IpFamily, addr: Uint8Array, port: number): Uint8Array {
  if (family === 4) {
    const b = new Uint8Array(LB4_REVERSE_NAT.size);
    encodeLb4ReverseNat({ address: ipv4Word(addr), port }, b);
    return b;
  }
  const b = new Uint8Array(LB6_REVERSE_NAT.size);
  encodeLb6ReverseNat({ address: addr, port }, b);
  return b;
}

// ---- decoding (listings of tables read back from either datapath) ----

export interface ServiceRecord { vip: string; port: number; proto: number; slot: number; value: LbService }
export interface BackendRecord { id: number; address: string; port: number; proto: number }
export interface RevNatRecord { index: number; address: string; port: number }

export function decodeServiceRecord(family: IpFamily, rec: Uint8Array): ServiceRecord {
  if (family === 4) {
    const k = decodeLb4Key(rec);
    return { vip: formatIp(bytes4(k.address)), port: k.dport, proto: k.proto, slot: k.slot, value: decodeLbService(rec, LB4_KEY.size) };
  }
  const k = decodeLb6Key(rec);
  return { vip: formatIp(k.address), port: k.dport, proto: k.proto, slot: k.slot, value: decodeLbService(rec, LB6_KEY.size) };
}

export function decodeBackendRecord(family: IpFamily, rec: Uint8Array): BackendRecord {
  const id = new DataView(rec.buffer, rec.byteOffset).getUint32(0, true);
  if (family === 4) {
    const b = decodeLb4Backend(rec, 4);
    return { id, address: formatIp(bytes4(b.address)), port: b.port, proto: b.proto };
  }
  const b = decodeLb6Backend(rec, 4);
  return { id, address: formatIp(b.address), port: b.port, proto: b.proto };
}

export function decodeRevNatRecord(family: IpFamily, rec: Uint8Array): RevNatRecord {
  const index = new DataView(rec.buffer, rec.byteOffset).getUint16(0, true);
  if (family === 4) {
    const n = decodeLb4ReverseNat(rec, 2);
    return { index, address: formatIp(bytes4(n.address)), port: n.port };
  }
  const n = decodeLb6ReverseNat(rec, 2);
  return { index, address: formatIp(n.address), port: n.port };
}
