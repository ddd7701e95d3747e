/** The capture filter over a packet's bytes: address (or CIDR) and port on either side. */
import { addressMatcher } from "../packet/cidr.js";
import { decodePacket } from "../packet/decode.js";
import type { CaptureSettings } from "./settings.js";

export type PacketMatch = (data: Uint8Array, link: "ip" | "ethernet") => boolean;

export function captureMatch(s: Pick<CaptureSettings, "address" | "port">): PacketMatch {
  const within = s.address === undefined ? undefined : addressMatcher(s.address, "capture: address");
  const port = s.port;
  if (!within && port === undefined) return () => true;
  return (data, link) => {
    const p = decodePacket(data, link);
    if (port !== undefined && p.sport !== port && p.dport !== port) return false;
    if (within && !within([p.src, p.dst])) return false;
    return true;
  };
}
