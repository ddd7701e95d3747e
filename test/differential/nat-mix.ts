/**
 * Seeded NAT traffic for the differential suite: pods behind a masquerade
 * address talking to a few remote hosts over TCP, UDP and ICMP echo (IPv4 and
 * IPv6), with a port range small enough that mappings collide and run out;
 * replies and ICMP errors to the translated ports (read from the live
 * mappings, so they hit), strays to unmapped ports, GC runs and a clock that
 * sometimes jumps past the timeouts.
 */
import { ethernet, packet4, packet6, quoteForIcmpError } from "../../host/packet/build.js";
import type { NatTables } from "../../host/nat/tables.js";
import type { NatRecord } from "../../host/nat/records.js";
import { seededRandom } from "../support/seeded-random.js";
import type { DiffEvent } from "./harness.js";

export const MIX_MASQ4 = "192.0.2.1";
export const MIX_MASQ6 = "2001:db8:ffff::1";

const PODS4 = ["10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.1.4"];
const PODS6 = ["fd00:1::1", "fd00:1::2", "fd00:1::3"];
const REMOTES4 = ["198.51.100.1", "198.51.100.2"];
const REMOTES6 = ["2001:db8:7::1", "2001:db8:7::2"];
const PORTS = [1000, 1100, 40000, 40001, 40002];
const DPORTS = [53, 80];

const frame = (pkt: Uint8Array) => ethernet({ etherType: pkt[0] >> 4 === 4 ? 0x0800 : 0x86dd }, pkt);

/** `count` events; `mappings` reads the live reverse mappings (the Wasm side's) when a reply is built. */
export function* natMix(seed: number, count: number, mappings: NatTables, startNow = 10_000): Generator<DiffEvent> {
  const rand = seededRandom(seed);
  const pick = <T>(a: readonly T[]) => a[Math.floor(rand() * a.length)];
  let now = startNow;
  for (let i = 0; i < count; i++) {
    const r = rand();
    if (r < 0.02) {
      now += 30 + Math.floor(rand() * 60);
      yield { kind: "gc", now };
      continue;
    }
    if (r < 0.06) now += Math.floor(rand() * 40);
    const v6 = rand() < 0.35;
    const b = v6 ? packet6 : packet4;
    const proto = pick(["tcp", "udp", "udp", "icmp"] as const);
    if (r < 0.55) {
      // A pod sends.
      const p = b({ src: pick(v6 ? PODS6 : PODS4), dst: pick(v6 ? REMOTES6 : REMOTES4) });
      const sport = pick(PORTS), dport = pick(DPORTS);
      const pkt = proto === "tcp" ? p.tcp({ sport, dport, flags: rand() < 0.3 ? { syn: true } : rand() < 0.1 ? { fin: true, ack: true } : { ack: true } })
        : proto === "udp" ? p.udp({ sport, dport, payload: new Uint8Array([i & 255]) })
        : v6 ? packet6({ src: pick(PODS6), dst: pick(REMOTES6) }).icmp6Echo({ request: true, id: sport, seq: i & 0xffff })
        : packet4({ src: pick(PODS4), dst: pick(REMOTES4) }).icmpEcho({ request: true, id: sport, seq: i & 0xffff });
      yield { kind: "packet", frame: frame(pkt), direction: "egress", now, note: `egress ${proto}` };
      continue;
    }
    const reverse = mappings.list(v6 ? "nat6" : "nat4").filter((m: NatRecord) => m.dir === "ingress");
    const m = reverse.length && rand() < 0.85 ? pick(reverse) : undefined;
    const masq = v6 ? MIX_MASQ6 : MIX_MASQ4;
    if (m && rand() < 0.1) {
      // A router reports the translated packet: an ICMP error quoting what left the node.
      const sent = m.proto === 6 ? b({ src: masq, dst: m.src }).tcp({ sport: m.dport, dport: m.sport, flags: { ack: true } })
        : m.proto === 17 ? b({ src: masq, dst: m.src }).udp({ sport: m.dport, dport: m.sport })
        : v6 ? packet6({ src: masq, dst: m.src }).icmp6Echo({ request: true, id: m.sport, seq: 1 })
        : packet4({ src: masq, dst: m.src }).icmpEcho({ request: true, id: m.sport, seq: 1 });
      const err = v6 ? packet6({ src: "2001:db8:9::1", dst: masq }).icmp6Error({ type: 1, code: 4, quoted: quoteForIcmpError(sent) })
        : packet4({ src: "203.0.113.1", dst: masq }).icmpError({ type: 3, code: 3, quoted: quoteForIcmpError(sent) });
      yield { kind: "packet", frame: frame(err), direction: "ingress", now, note: "icmp error" };
      continue;
    }
    const src = m ? m.src : pick(v6 ? REMOTES6 : REMOTES4);
    const p = b({ src, dst: masq });
    const kind = m ? (m.proto === 6 ? "tcp" : m.proto === 17 ? "udp" : "icmp") : proto;
    const port = m ? (kind === "icmp" ? m.sport : m.dport) : pick([22, 6000, 6001, 40000]);
    const remotePort = m ? m.sport : pick(DPORTS);
    const pkt = kind === "tcp" ? p.tcp({ sport: remotePort, dport: port, flags: { ack: true } })
      : kind === "udp" ? p.udp({ sport: remotePort, dport: port })
      : v6 ? packet6({ src, dst: masq }).icmp6Echo({ request: false, id: port, seq: 1 })
      : packet4({ src, dst: masq }).icmpEcho({ request: false, id: port, seq: 1 });
    yield { kind: "packet", frame: frame(pkt), direction: rand() < 0.9 ? "ingress" : "auto", now, note: `ingress ${kind}${m ? " (mapped)" : ""}` };
  }
}
