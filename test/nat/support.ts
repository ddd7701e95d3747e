// Shared by the NAT suites: both engines, options, and readers for raw IP packets.
import { expect } from "vitest";
import { Datapath } from "../../host/datapath.js";
import { KernelDatapath } from "../../host/kernel/datapath.js";
import type { DatapathOptions } from "../../host/config.js";
import type { NatOptions } from "../../host/nat/config.js";
import type { NatTables } from "../../host/nat/tables.js";
import type { DatapathEngine } from "../../host/engine.js";
import { fillChecksums, verifyChecksums } from "../../host/packet/checksum.js";
import { formatIp } from "../../host/packet/address.js";
import { kernelUnavailable } from "../differential/kernel-available.js";

export const MASQ4 = "192.0.2.1";
export const MASQ6 = "2001:db8:ffff::1";

export const NAT: NatOptions = {
  ipv4: { address: MASQ4, clusterCidrs: ["10.0.0.0/8"], excludedCidrs: ["203.0.113.128/25"] },
  ipv6: { address: MASQ6, clusterCidrs: ["fd00::/16"] },
  seed: 11,
  entries: 256,
};

export function options(nat: Partial<NatOptions> = {}, extra: DatapathOptions = {}): DatapathOptions {
  return { hashSeed: 3, conntrack: { tcpEntries: 1024, otherEntries: 1024 }, fragments: { entries: 64 }, nat: { ...NAT, ...nat }, ...extra };
}

export type NatEngine = DatapathEngine & { nat: NatTables; deleteEntry?: Datapath["deleteEntry"] };

export const ENGINES: { name: "wasm" | "bpf"; missing: string | undefined; create(o: DatapathOptions): Promise<NatEngine> }[] = [
  { name: "wasm", missing: undefined, create: (o) => Datapath.create(o) },
  { name: "bpf", missing: kernelUnavailable(), create: (o) => KernelDatapath.create(o) },
];

/** Addresses and ports of a raw IPv4/IPv6 packet (no extension headers). */
export function fields(pkt: Uint8Array) {
  const v4 = pkt[0] >> 4 === 4;
  const l4 = v4 ? (pkt[0] & 15) * 4 : 40;
  const proto = v4 ? pkt[9] : pkt[6];
  const u16 = (o: number) => (pkt[o] << 8) | pkt[o + 1];
  return {
    src: formatIp(v4 ? pkt.subarray(12, 16) : pkt.subarray(8, 24)),
    dst: formatIp(v4 ? pkt.subarray(16, 20) : pkt.subarray(24, 40)),
    proto,
    sport: u16(l4),
    dport: u16(l4 + 2),
    /** ICMP echo identifier / first word after the ICMP checksum. */
    icmpId: u16(l4 + 4),
    l4,
  };
}

/** Every checksum of the packet recomputed; fails with the problems listed. */
export function expectChecksumsOk(pkt: Uint8Array): void {
  const r = verifyChecksums(pkt, 0);
  expect(r.problems).toEqual([]);
  expect(r.checked.length).toBeGreaterThan(0);
}

/** The quoted packet of an ICMP error, when quoted whole: its own checksums must be right too. */
export function expectQuotedChecksumsOk(pkt: Uint8Array): void {
  const { l4 } = fields(pkt);
  const quoted = pkt.slice(l4 + 8);
  const recomputed = fillChecksums(quoted.slice());
  expect(Buffer.from(quoted).toString("hex")).toBe(Buffer.from(recomputed).toString("hex"));
  expectChecksumsOk(quoted);
}

/**
 * Whether the ICMP or ICMPv6 checksum of a raw IP packet verifies, summed here
 * by hand (RFC 1071) rather than by host/packet/checksum.ts, so that a mistake
 * shared by that module and the datapaths cannot hide: ICMPv4 covers the
 * message alone, ICMPv6 also the pseudo-header (RFC 8200 8.1).
 */
export function icmpChecksumVerifies(pkt: Uint8Array): boolean {
  const v4 = pkt[0] >> 4 === 4;
  const l4 = v4 ? (pkt[0] & 15) * 4 : 40;
  const end = v4 ? (pkt[2] << 8) | pkt[3] : 40 + ((pkt[4] << 8) | pkt[5]);
  const message = pkt.subarray(l4, end);
  let sum = 0;
  const add = (b: Uint8Array) => {
    for (let i = 0; i < b.length; i += 2) sum += (b[i] << 8) | (b[i + 1] ?? 0);
  };
  if (!v4) {
    add(pkt.subarray(8, 40)); // source and destination addresses
    sum += message.length + 58; // upper-layer length, next header
  }
  add(message);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum === 0xffff;
}
