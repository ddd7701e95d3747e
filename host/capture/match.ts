/** The capture filter over a packet's bytes: address (or CIDR) and port on either side. */
import { hostPrefix, parsePrefix, prefixContains } from "../packet/cidr.js";
import { decodePacket } from "../packet/decode.js";
import type { CaptureSettings } from "./settings.js";

export type PacketMatch = (data: Uint8Array, link: "ip" | "ethernet") => boolean;

export function captureMatch(s: Pick<CaptureSettings, "address" | "port">): PacketMatch {
  const prefix = s.address === undefined ? undefined : s.address.includes("/") ? parsePrefix(s.address, "capture: address") : hostPrefix(s.address, "capture: address");
  const port = s.port;
  if (!prefix && port === undefined) return () => true;
  return (data, link) => {
    const p = decodePacket(data, link);
    if (port !== undefined && p.sport !== port && p.dport !== port) return false;
    if (prefix && ![p.src, p.dst].some((a) => a !== undefined && prefixContains(prefix, hostPrefix(a, "packet")))) return false;
    return true;
  };
}
