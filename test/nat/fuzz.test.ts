// The NAT stage never traps: translated flows, replies to the masquerade
// address and ICMP errors quoting translated packets, mutated (flipped,
// truncated, extended bytes) and sent in every direction through a NAT-enabled
// Wasm core (debug build: bounds and assertions on), with a port range small
// enough that allocation collides and runs out.
import { beforeAll, describe, it } from "vitest";
import fc from "fast-check";
import { Datapath } from "../../host/datapath.js";
import type { Direction } from "../../host/wasm/batch.js";
import { packet4, packet6, quoteForIcmpError, fragment4 } from "../../host/packet/build.js";
import { DIRECTIONS, fcParams, hex, mutate, mutationArb, runs } from "../wasm/fuzz-inputs.js";
import { dropReasonName } from "../../host/generated/layout.js";
import type { PacketVerdict } from "../../host/verdict.js";
import { MASQ4, MASQ6, options } from "./support.js";

let dp: Datapath;
beforeAll(async () => {
  dp = await Datapath.create(options({ ports: { min: 40000, max: 40003 }, retries: 2 }), "debug");
});

const remote4 = "198.51.100.7", remote6 = "2001:db8:7::7";
const samples: Uint8Array[] = [];
for (const sport of [40000, 40001, 53]) {
  samples.push(
    packet4({ src: "10.0.1.1", dst: remote4 }).tcp({ sport, dport: 80, flags: { syn: true } }),
    packet4({ src: "10.0.1.2", dst: remote4 }).udp({ sport, dport: 53, payload: new Uint8Array(9) }),
    packet4({ src: "10.0.1.3", dst: remote4 }).icmpEcho({ request: true, id: sport, seq: 1 }),
    packet4({ src: remote4, dst: MASQ4 }).tcp({ sport: 80, dport: sport, flags: { ack: true } }),
    packet4({ src: remote4, dst: MASQ4 }).icmpEcho({ request: false, id: sport, seq: 1 }),
    packet4({ src: "203.0.113.1", dst: MASQ4 }).icmpError({ type: 3, code: 3, quoted: quoteForIcmpError(packet4({ src: MASQ4, dst: remote4 }).udp({ sport, dport: 53 })) }),
    packet4({ src: "203.0.113.1", dst: MASQ4 }).icmpError({ type: 11, code: 0, quoted: packet4({ src: MASQ4, dst: remote4 }).tcp({ sport, dport: 80, flags: { syn: true } }) }),
    packet6({ src: "fd00:1::1", dst: remote6 }).udp({ sport, dport: 53 }),
    packet6({ src: "fd00:1::1", dst: remote6 }).icmp6Echo({ request: true, id: sport, seq: 1 }),
    packet6({ src: remote6, dst: MASQ6 }).udp({ sport: 53, dport: sport }),
    packet6({ src: "2001:db8:9::1", dst: MASQ6 }).icmp6Error({ type: 1, code: 4, quoted: quoteForIcmpError(packet6({ src: MASQ6, dst: remote6 }).tcp({ sport, dport: 80, flags: { ack: true } })) }),
    ...fragment4(packet4({ src: "10.0.1.4", dst: remote4, id: sport }).udp({ sport, dport: 53, payload: new Uint8Array(64) }), 32),
  );
}

/** A well-formed decision; NAT rewrites in place, so the length never changes. */
function checkVerdict(v: PacketVerdict, input: Uint8Array): void {
  const where = () => `${hex(input)} -> ${JSON.stringify({ ...v, data: hex(v.data) })}`;
  if (v.verdict === "drop" && (!v.dropReason || dropReasonName[v.dropCode] !== v.dropReason)) throw new Error(`drop without a known reason: ${where()}`);
  if (v.verdict === "pass" && v.dropCode !== 0) throw new Error(`pass with a drop code: ${where()}`);
  if (v.verdict !== "pass" && v.verdict !== "drop") throw new Error(`no verdict: ${where()}`);
  if (v.data.length !== input.length) throw new Error(`length changed: ${where()}`);
}

describe("NAT stage under mutation (Wasm, debug build)", () => {
  it(`never traps and always decides (${runs(0.3)} runs)`, () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ pick: fc.nat(), muts: fc.array(mutationArb, { maxLength: 3 }), dir: fc.constantFrom<Direction>(...DIRECTIONS) }), { minLength: 1, maxLength: 12 }),
        fc.integer({ min: 1, max: 5000 }),
        (steps, now) => {
          dp.flush();
          for (const s of steps) {
            const bytes = mutate(samples[s.pick % samples.length]!, [], s.muts);
            let v;
            try {
              v = dp.decide(bytes, { link: "ip", direction: s.dir, now });
            } catch (e) {
              throw new Error(`decide threw on ${s.dir} ${hex(bytes)}: ${e}`);
            }
            checkVerdict(v, bytes);
            now += s.pick % 7 === 0 ? 61 : 0; // sometimes past the UDP/ICMP timeout: stale pairs on the path
          }
        },
      ),
      fcParams(runs(0.3)),
    );
  });
});
