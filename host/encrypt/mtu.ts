/**
 * MTU correction for the userspace ESP path (Cilium 1.5's "automatic MTU
 * correction"): an inner packet grows by the outer IPv4 header and the
 * ESP-in-UDP overhead (esp.ts, maxEspOverhead: UDP 8, SPI and sequence 8,
 * IV 8, pad length and next header 2, padding up to 3, ICV), so the TUN and
 * the pod routes towards other nodes carry that much less than the underlay.
 * For an underlay of 1500 and a 16-byte ICV: 1500 - 20 - 45 = 1435.
 */
import { maxEspOverhead } from "./esp.js";

export const OUTER_IPV4_HEADER = 20;

export function encryptedMtu(underlayMtu: number, icvBits: number): number {
  return underlayMtu - OUTER_IPV4_HEADER - maxEspOverhead(icvBits / 8);
}
