/**
 * The IP protocols the datapaths handle, from the shared enum ip_proto
 * (bpf/include/types/common.h): their numbers, names and the two questions
 * every layer asks of them.
 */
import { IpProto, ipProtoText } from "../generated/layout.js";

export { IpProto };

/** "TCP", "UDP", "ICMP", "ICMPv6" by protocol number. */
export const PROTO_NAMES: Readonly<Record<number, string>> = ipProtoText;

/** ICMP or ICMPv6: no ports; flows are told apart by the echo identifier. */
export function isIcmpProto(proto: number): boolean {
  return proto === IpProto.PROTO_ICMP || proto === IpProto.PROTO_ICMPV6;
}

/** TCP or UDP: the protocols with ports. */
export function hasPorts(proto: number): boolean {
  return proto === IpProto.PROTO_TCP || proto === IpProto.PROTO_UDP;
}
