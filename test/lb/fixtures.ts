/** Shared by the LB suites: a client, a VIP, backends, packet helpers, checks. */
import { expect } from "vitest";
import type { Datapath } from "../../host/datapath.js";
import type { DatapathOptions } from "../../host/config.js";
import { packet4, packet6 } from "../../host/packet/build.js";
import { verifyChecksums } from "../../host/packet/checksum.js";
import { decodePacket } from "../../host/packet/decode.js";
import type { PacketVerdict } from "../../host/verdict.js";
import type { Direction } from "../../host/wasm/batch.js";

export const LB_TEST_OPTIONS: DatapathOptions = {
  conntrack: { tcpEntries: 4096, otherEntries: 4096 },
  fragments: { entries: 64 },
  lb: { services: 1024, backends: 1024, revNat: 256, maglevM: 251, maglevRows: 8 },
};

export interface Family {
  family: 4 | 6;
  vip: string;
  client: string;
  router: string;
  backend(i: number): string;
  build(src: string, dst: string): ReturnType<typeof packet4> | ReturnType<typeof packet6>;
}

export const V4: Family = {
  family: 4, vip: "10.96.0.10", client: "10.0.1.5", router: "10.0.9.1",
  backend: (i) => `10.0.2.${i}`,
  build: (src, dst) => packet4({ src, dst }),
};

export const V6: Family = {
  family: 6, vip: "fd00:96::10", client: "fd00:1::5", router: "fd00:9::1",
  backend: (i) => `fd00:2::${i}`,
  build: (src, dst) => packet6({ src, dst }),
};

export function backends(f: Family, ids: number[], port = 8080) {
  return ids.map((i) => ({ addr: f.backend(i), port }));
}

/** Decides one raw IP packet; what passes must carry correct checksums (full recompute). */
export function send(dp: Datapath, packet: Uint8Array, now: number, direction: Direction = "auto"): PacketVerdict {
  const v = dp.decide(packet, { link: "ip", direction, now });
  if (v.verdict === "pass") expect(verifyChecksums(v.data, 0).problems).toEqual([]);
  return v;
}

export function summary(v: PacketVerdict) {
  const d = decodePacket(v.data, "ip");
  return { src: d.src, dst: d.dst, sport: d.sport, dport: d.dport };
}
