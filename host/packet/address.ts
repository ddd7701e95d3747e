// IP and MAC address text <-> bytes.
//
// Parsing is strict on purpose: these strings come from test fixtures, CLI
// arguments and policy files, and a silently misread address (an octal-looking
// "010", a stray zone id) produces a packet that is wrong in a way nobody
// notices until a differential test disagrees for a confusing reason.

export type IpFamily = 4 | 6;

export interface ParsedIp {
  family: IpFamily;
  bytes: Uint8Array;
}

/** An address as accepted by the builders: text, or raw bytes (4 or 16). */
export type IpInput = string | Uint8Array;

export function parseIp(s: string): ParsedIp {
  if (typeof s !== "string") throw new Error(`Invalid IP address: expected a string, got ${typeof s}`);
  if (s.includes(":")) return { family: 6, bytes: parseIpv6(s) };
  return { family: 4, bytes: parseIpv4(s) };
}

export function parseIpv4(s: string): Uint8Array {
  // Every kvstore record an agent lists carries addresses (100,000s per list at scale): read the
  // common well-formed case in one pass over the characters; anything else takes the strict path
  // below, which names what is wrong.
  const fast = parseIpv4Fast(s);
  if (fast) return fast;
  const fail = (why: string): never => {
    throw new Error(`Invalid IPv4 address "${s}": ${why}`);
  };
  const parts = s.split(".");
  if (parts.length !== 4) fail(`expected 4 dot-separated parts, got ${parts.length}`);
  const out = new Uint8Array(4);
  parts.forEach((p, i) => {
    if (!/^[0-9]{1,3}$/.test(p)) fail(`part ${i + 1} "${p}" is not a decimal number of 1-3 digits`);
    // inet_aton would read "010" as octal 8; refuse rather than guess.
    if (p.length > 1 && p[0] === "0") fail(`part ${i + 1} "${p}" has a leading zero`);
    const n = Number(p);
    if (n > 255) fail(`part ${i + 1} (${n}) is greater than 255`);
    out[i] = n;
  });
  return out;
}

/** Four dot-separated decimal parts of 1-3 digits, no leading zero, each <= 255; undefined for anything else. */
function parseIpv4Fast(s: string): Uint8Array | undefined {
  if (typeof s !== "string" || s.length < 7 || s.length > 15) return undefined;
  const out = new Uint8Array(4);
  let part = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i <= s.length; i++) {
    const c = i < s.length ? s.charCodeAt(i) : 46; // the end closes the last part like a "."
    if (c === 46) {
      if (digits === 0 || value > 255 || part > 3) return undefined;
      out[part++] = value;
      value = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits === 1 && value === 0) return undefined; // leading zero: the strict path says so
      if (++digits > 3) return undefined;
      value = value * 10 + (c - 48);
    } else {
      return undefined;
    }
  }
  return part === 4 ? out : undefined;
}

export function parseIpv6(s: string): Uint8Array {
  const fail = (why: string): never => {
    throw new Error(`Invalid IPv6 address "${s}": ${why}`);
  };
  if (s.includes("%")) fail("zone ids (%...) are not supported");
  if (s.includes("/")) fail("prefix lengths (/n) are not addresses");
  const halves = s.split("::");
  if (halves.length > 2) fail('"::" may appear only once');

  const parseSide = (side: string, allowV4Tail: boolean): number[] => {
    if (side === "") return [];
    const groups = side.split(":");
    const words: number[] = [];
    groups.forEach((g, i) => {
      const last = i === groups.length - 1;
      if (last && allowV4Tail && g.includes(".")) {
        let v4: Uint8Array;
        try {
          v4 = parseIpv4(g);
        } catch (e) {
          return fail(`embedded IPv4 part: ${(e as Error).message}`);
        }
        words.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
        return;
      }
      if (g === "") fail("empty group (a single ':' at the start or end, or ':::')");
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) fail(`group "${g}" is not 1-4 hex digits`);
      words.push(parseInt(g, 16));
    });
    return words;
  };

  let words: number[];
  if (halves.length === 2) {
    const head = parseSide(halves[0]!, false);
    const tail = parseSide(halves[1]!, true);
    // "::" stands for at least one zero group, so 8 explicit groups leave it nothing.
    if (head.length + tail.length > 7) fail(`too many groups for "::" to stand for anything`);
    words = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  } else {
    words = parseSide(s, true);
    if (words.length !== 8) fail(`expected 8 groups, got ${words.length}`);
  }
  const out = new Uint8Array(16);
  words.forEach((w, i) => {
    out[2 * i] = w >> 8;
    out[2 * i + 1] = w & 0xff;
  });
  return out;
}

/** RFC 5952 canonical text for IPv6; dotted quad for IPv4. */
/**
 * An IPv4 address's 4 bytes as the u32 the generated encoders take for a
 * `__be32` field: read big-endian, so the encoder's little-endian store puts
 * the bytes back in network order.
 */
export function ipv4Word(bytes: Uint8Array): number {
  return new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, false);
}

export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  if (bytes.length !== 16) throw new Error(`Cannot format IP address: expected 4 or 16 bytes, got ${bytes.length}`);
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push((bytes[i]! << 8) | bytes[i + 1]!);

  // IPv4-mapped addresses are what dual-stack sockets show; print them the way people recognise.
  if (words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff) {
    return `::ffff:${formatIp(bytes.subarray(12, 16))}`;
  }

  // Compress the longest run of >= 2 zero groups, leftmost on a tie (RFC 5952 4.2).
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (ws: number[]) => ws.map((w) => w.toString(16)).join(":");
  if (bestStart < 0) return hex(words);
  return `${hex(words.slice(0, bestStart))}::${hex(words.slice(bestStart + bestLen))}`;
}

/** Accepts text or bytes; `expect` rejects an address of the wrong family with a clear message. */
export function ipBytes(addr: IpInput, expect?: IpFamily, what = "address"): Uint8Array {
  let bytes: Uint8Array;
  if (typeof addr === "string") {
    bytes = parseIp(addr).bytes;
  } else if (addr instanceof Uint8Array && (addr.length === 4 || addr.length === 16)) {
    bytes = addr;
  } else {
    throw new Error(`Invalid ${what}: expected a string or 4/16 bytes`);
  }
  const family: IpFamily = bytes.length === 4 ? 4 : 6;
  if (expect !== undefined && family !== expect) {
    const shown = typeof addr === "string" ? `"${addr}"` : formatIp(bytes);
    throw new Error(`Invalid ${what} ${shown}: expected an IPv${expect} address, got IPv${family}`);
  }
  return bytes;
}

export function parseMac(s: string): Uint8Array {
  const parts = s.split(/[:-]/);
  if (parts.length !== 6 || !parts.every((p) => /^[0-9a-fA-F]{2}$/.test(p))) {
    throw new Error(`Invalid MAC address "${s}": expected six 2-digit hex groups like 02:00:00:00:00:01`);
  }
  return Uint8Array.from(parts.map((p) => parseInt(p, 16)));
}

export function formatMac(bytes: Uint8Array): string {
  if (bytes.length !== 6) throw new Error(`Cannot format MAC address: expected 6 bytes, got ${bytes.length}`);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(":");
}

/** ff02::1:ffXX:XXXX, where neighbour solicitations for `target` are sent (RFC 4291 2.7.1). */
export function solicitedNodeMulticast(target: IpInput): Uint8Array {
  const t = ipBytes(target, 6, "neighbour solicitation target");
  const out = parseIpv6("ff02::1:ff00:0");
  out.set(t.subarray(13, 16), 13);
  return out;
}

/** 33:33 + low 32 bits: the Ethernet destination for an IPv6 multicast group (RFC 2464 7). */
export function ipv6MulticastMac(group: IpInput): Uint8Array {
  const g = ipBytes(group, 6, "multicast group");
  return Uint8Array.of(0x33, 0x33, g[12]!, g[13]!, g[14]!, g[15]!);
}
