/**
 * Link-layer header types the host can decode. Values are the LINKTYPE_*
 * numbers from the tcpdump.org registry, i.e. what capture files store.
 */
export enum LinkType {
  Ethernet = 1,
  Raw = 101,
  LinuxSll = 113,
  Ipv4 = 228,
  Ipv6 = 229,
}

/**
 * Maps a link type number read from a file to a LinkType, or undefined when
 * the host cannot decode it.
 *
 * 12 and 14 are accepted as Raw because some systems wrote their platform's
 * DLT_RAW value (12 on most BSDs, 14 on OpenBSD) instead of LINKTYPE_RAW.
 */
export function linkTypeFromNumber(value: number): LinkType | undefined {
  switch (value) {
    case LinkType.Ethernet:
      return LinkType.Ethernet;
    case LinkType.Raw:
    case 12:
    case 14:
      return LinkType.Raw;
    case LinkType.LinuxSll:
      return LinkType.LinuxSll;
    case LinkType.Ipv4:
      return LinkType.Ipv4;
    case LinkType.Ipv6:
      return LinkType.Ipv6;
    default:
      return undefined;
  }
}

/** Human-readable list for error messages. */
export const SUPPORTED_LINK_TYPES =
  "1 Ethernet, 101 (or 12/14) Raw IP, 113 Linux cooked (SLL), 228 IPv4, 229 IPv6";
