/**
 * Seeded random packet sequences for the differential suite: a pool of
 * TCP/UDP/ICMP flows over IPv4 and IPv6 sending packets both ways, with ICMP
 * errors quoting them, fragmented datagrams (some out of order), ARP and
 * neighbour discovery, malformed packets, GC runs and a clock that mostly
 * stays but sometimes jumps past the timeouts. Every packet is an Ethernet
 * frame, because kernel test runs take frames.
 */
import {
  ethernet, fragment4, fragment6, packet4, packet6, quoteForIcmpError, type TcpFlags,
} from "../../host/packet/build.js";
import type { Direction } from "../../host/wasm/batch.js";
import { seededRandom } from "../support/seeded-random.js";

export type MixEvent =
  | { kind: "packet"; frame: Uint8Array; direction: Direction; now: number; note: string }
  | { kind: "gc"; now: number };


interface Flow {
  family: 4 | 6;
  proto: "tcp" | "udp" | "icmp";
  client: string;
  server: string;
  cport: number;
  sport: number;
}

const TCP_FLAGS: TcpFlags[] = [
  { syn: true }, { syn: true, ack: true }, { ack: true }, { psh: true, ack: true }, { psh: true, ack: true },
  { ack: true }, { fin: true, ack: true }, { rst: true }, { rst: true, ack: true },
];

export function flowMix(seed: number, count: number, opts: { poolSize?: number; startNow?: number } = {}): MixEvent[] {
  const poolSize = opts.poolSize ?? 48;
  const rnd = seededRandom(seed);
  const int = (n: number) => Math.floor(rnd() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
  const flows: Flow[] = Array.from({ length: poolSize }, (_, i) => {
    const family = rnd() < 0.5 ? 4 : 6;
    const proto = pick(["tcp", "tcp", "udp", "icmp"] as const);
    const host = (side: number) => (family === 4 ? `10.${side}.0.${1 + int(4)}` : `fd00:${side}::${1 + int(4)}`);
    return { family, proto, client: host(1), server: host(2), cport: 1024 + int(6), sport: pick([53, 80, 443]) } as Flow;
  });
  const ip = (f: Flow, fromClient: boolean) => {
    const h = { src: fromClient ? f.client : f.server, dst: fromClient ? f.server : f.client, id: int(0x10000) };
    return f.family === 4 ? packet4(h) : packet6({ src: h.src, dst: h.dst });
  };
  const l3 = (f: Flow, fromClient: boolean, payloadLen: number): Uint8Array => {
    const b = ip(f, fromClient);
    const [sp, dp] = fromClient ? [f.cport, f.sport] : [f.sport, f.cport];
    const payload = Uint8Array.from({ length: payloadLen }, () => int(256));
    if (f.proto === "tcp") return b.tcp({ sport: sp, dport: dp, flags: pick(TCP_FLAGS), payload });
    if (f.proto === "udp") return b.udp({ sport: sp, dport: dp, payload });
    const echo = { request: fromClient, id: f.cport, seq: int(100), payload };
    return "icmpEcho" in b ? b.icmpEcho(echo) : b.icmp6Echo(echo);
  };
  const frame = (p: Uint8Array) => ethernet(rnd() < 0.1 ? { vlan: 1 + int(100) } : {}, p);

  const events: MixEvent[] = [];
  let now = opts.startNow ?? 10_000;
  while (events.length < count) {
    const r = rnd();
    if (r < 0.02) now += 1 + int(100);          // idle gaps, some past the UDP/SYN timeouts
    else if (r < 0.2) now += 1;
    if (rnd() < 0.005) { events.push({ kind: "gc", now }); continue; }
    const direction: Direction = pick(["auto", "auto", "auto", "egress", "ingress"] as const);
    const f = pick(flows);
    const fromClient = rnd() < 0.6;
    const k = rnd();
    if (k < 0.04) {
      // An ICMP error quoting a packet of the flow, from a router or the peer.
      const quoted = quoteForIcmpError(l3(f, fromClient, 8));
      const to = fromClient ? f.client : f.server;
      const from = rnd() < 0.5 ? (f.family === 4 ? "10.9.9.9" : "fd00:9::9") : fromClient ? f.server : f.client;
      const err = f.family === 4
        ? packet4({ src: from, dst: to }).icmpError({ type: pick([3, 11, 12]), code: int(4), quoted })
        : packet6({ src: from, dst: to }).icmp6Error({ type: pick([1, 2, 3, 4]), code: 0, mtu: 1280, quoted });
      events.push({ kind: "packet", frame: frame(err), direction, now, note: "icmp error" });
    } else if (k < 0.06 && f.proto !== "tcp") {
      // A fragmented datagram, sometimes reordered or missing its first fragment.
      const whole = l3(f, fromClient, 1200 + int(1500));
      const frags = f.family === 4 ? fragment4(whole, 600) : fragment6(whole, 600, int(0x7fffffff));
      if (rnd() < 0.2) frags.reverse();
      if (rnd() < 0.1) frags.shift();
      for (const p of frags) events.push({ kind: "packet", frame: frame(p), direction, now, note: "fragment" });
    } else if (k < 0.07) {
      const ndp = packet6({ src: "fd00:1::1", dst: "ff02::1:ff00:2" }).icmp6Ndp({ target: "fd00:2::2" });
      events.push({ kind: "packet", frame: rnd() < 0.5 ? frame(ndp) : ethernet({ etherType: 0x0806 }, new Uint8Array(28)), direction, now, note: "ndp/arp" });
    } else if (k < 0.12) {
      // Malformed: truncated or with a byte flipped (only beyond the Ethernet header, so
      // the kernel's test run accepts the frame).
      const fr = frame(l3(f, fromClient, int(64)));
      let bad: Uint8Array;
      if (rnd() < 0.5) bad = fr.slice(0, 14 + int(fr.length - 14));
      else { bad = fr.slice(); bad[14 + int(bad.length - 14)] ^= 1 << int(8); }
      events.push({ kind: "packet", frame: bad, direction, now, note: "malformed" });
    } else {
      events.push({ kind: "packet", frame: frame(l3(f, fromClient, int(200))), direction, now, note: f.proto });
    }
  }
  return events.slice(0, count);
}
