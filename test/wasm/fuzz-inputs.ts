/**
 * Shared pieces of the Wasm-core fuzz tests (test/wasm/fuzz*.test.ts):
 * run counts, the per-verdict invariants, an out-of-bounds-read detector,
 * generators of valid packets of every kind the core parses, mutations, and
 * flows and packet sequences with what the conntrack model
 * (conntrack-model.ts) needs to know of each packet.
 */
import fc from "fast-check";
import { expect } from "vitest";
import type { Datapath } from "../../host/datapath.js";
import type { Direction, LinkKind, PacketBatch } from "../../host/wasm/batch.js";
import type { TableName } from "../../host/wasm/core.js";
import type { CtOutcome, PacketVerdict } from "../../host/verdict.js";
import { dropReasonName } from "../../host/generated/layout.js";
import {
  ethernet,
  fragment4,
  fragment6,
  icmp6Ndp,
  ipv6,
  locateIp,
  packet4,
  packet6,
  quoteForIcmpError,
  tcpOptions,
  type Ipv6ExtHeaderSpec,
  type TcpFlags,
} from "../../host/packet/index.js";
import { diffStates, type CtModel, type ModelPkt, type ModelVerdict, type Prediction, type Snapshot } from "./conntrack-model.js";

// ---------------------------------------------------------------------------
// Run counts

/** Total cases of properties 1 + 2 (FUZZ_RUNS, default 100000). */
export const FUZZ_RUNS = (() => {
  const v = Number(process.env.FUZZ_RUNS ?? 100_000);
  return Number.isFinite(v) && v >= 1 ? Math.floor(v) : 100_000;
})();

/** A share of FUZZ_RUNS, at least 1. */
export function runs(share: number): number {
  return Math.max(1, Math.floor(FUZZ_RUNS * share));
}

/** Optional fixed seed (FUZZ_SEED) to replay a failure; fast-check prints the seed and path. */
export function fcParams(numRuns: number): fc.Parameters<unknown> {
  const seed = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED);
  return seed === undefined ? { numRuns } : { numRuns, seed };
}

export const LINKS: readonly LinkKind[] = ["ip", "ethernet"];
export const DIRECTIONS: readonly Direction[] = ["egress", "ingress", "auto"];

export const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

// ---------------------------------------------------------------------------
// Invariants of every verdict

const KNOWN_DROPS = new Set(Object.entries(dropReasonName).filter(([code]) => Number(code) !== 0).map(([, n]) => n));

/**
 * Whether the core may let this frame pass untracked: ARP (EtherType 0x0806,
 * optionally behind one 802.1Q tag), IPv6 neighbour discovery (ICMPv6 type
 * 133..137) or multicast listener discovery (130..132, 143), after any
 * extension headers. Deliberately lenient (a necessary
 * condition, not the core's exact rule).
 */
export function mayPassUntracked(b: Uint8Array, link: LinkKind): boolean {
  let l3 = 0;
  if (link === "ethernet") {
    if (b.length < 14) return false;
    let et = (b[12]! << 8) | b[13]!;
    l3 = 14;
    if (et === 0x8100) {
      if (b.length < 18) return false;
      et = (b[16]! << 8) | b[17]!;
      l3 = 18;
    }
    if (et === 0x0806) return true;
    if (et !== 0x86dd) return false;
  }
  if (b.length < l3 + 40 || b[l3]! >> 4 !== 6) return false;
  let nh = b[l3 + 6]!;
  let off = l3 + 40;
  for (let i = 0; i < 16; i++) {
    if (nh === 0 || nh === 43 || nh === 60 || nh === 51 || nh === 44) {
      if (off + 8 > b.length) return false;
      const len = nh === 44 ? 8 : nh === 51 ? (b[off + 1]! + 2) * 4 : (b[off + 1]! + 1) * 8;
      nh = b[off]!;
      off += len;
    } else break;
  }
  const type = b[off]!;
  return nh === 58 && off < b.length && ((type >= 130 && type <= 137) || type === 143);
}

/**
 * dp.decide, with a trap or host error turned into a failure that names the
 * packet (hex) and `context` (what led up to it).
 */
export function decideOrExplain(dp: Datapath, bytes: Uint8Array, meta: { link: LinkKind; direction: Direction; now: number }, context: () => string): PacketVerdict {
  try {
    return dp.decide(bytes, meta);
  } catch (e) {
    throw new Error(`decide threw (${e instanceof WebAssembly.RuntimeError ? "Wasm trap" : "host error"}) on ${meta.link} ${meta.direction} ${hex(bytes)}: ${e} ${context()}`);
  }
}

/** Checks what must hold for every decided packet; throws with the packet in hex. */
export function checkVerdict(v: PacketVerdict, input: Uint8Array, link: LinkKind): void {
  const where = () => `${link} packet ${hex(input)} -> ${JSON.stringify({ ...v, data: undefined })}`;
  if (v.verdict !== "pass" && v.verdict !== "drop") throw new Error(`no verdict: ${where()}`);
  if (v.verdict === "drop") {
    if (!v.dropReason || !KNOWN_DROPS.has(v.dropReason) || dropReasonName[v.dropCode] !== v.dropReason) {
      throw new Error(`drop without a known reason: ${where()}`);
    }
  } else {
    if (v.dropCode !== 0) throw new Error(`pass with drop code ${v.dropCode}: ${where()}`);
    if (v.ct === "none" && !mayPassUntracked(input, link)) {
      throw new Error(`untracked pass of a packet that is neither ARP nor neighbour discovery: ${where()}`);
    }
  }
  if (v.data.length !== input.length || !Buffer.from(v.data).equals(Buffer.from(input))) {
    throw new Error(`packet rewritten (${hex(v.data)}): ${where()}`);
  }
}

/** The decision-relevant part of a verdict, for comparisons. */
export const essence = (v: PacketVerdict) => ({
  verdict: v.verdict,
  dropReason: v.dropReason,
  ct: v.ct,
  direction: v.direction,
  ctTable: v.ctTable,
});

/**
 * Out-of-bounds-read detector. A read past the end of a packet does not trap
 * (the batch buffer goes on), so it would slip through "never traps". Decides
 * `pkt` with the bytes behind it in the buffer set to a pattern and then to
 * its complement: a core that reads only the packet decides both the same.
 * `setup` packets are decided first each time (after a flush) to rebuild the state.
 */
export class TailProbe {
  private readonly fillA: Uint8Array;
  private readonly fillB: Uint8Array;
  private readonly batch: PacketBatch;

  constructor(private readonly dp: Datapath) {
    this.batch = dp.createBatch(1, { bufferSize: 2048 + 128 });
    this.fillA = new Uint8Array(this.batch.maxPacket);
    let x = 0x9e3779b9;
    for (let i = 0; i < this.fillA.length; i++) {
      x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
      this.fillA[i] = x & 0xff;
    }
    this.fillB = this.fillA.map((b) => b ^ 0xff);
  }

  private run(fill: Uint8Array, steps: Step[], now: number): PacketVerdict[] {
    this.dp.flush();
    return steps.map((s) => {
      this.batch.clear();
      this.batch.push(fill);
      this.batch.clear();
      this.batch.push(s.bytes, { link: s.link, direction: s.direction });
      this.dp.process(this.batch, now);
      return this.batch.result(0);
    });
  }

  /** Throws when the last step's decision depends on the bytes behind a packet. */
  check(steps: Step[], now: number, reference?: PacketVerdict): void {
    const a = this.run(this.fillA, steps, now).map(essence);
    const b = this.run(this.fillB, steps, now).map(essence);
    const last = steps[steps.length - 1]!;
    const same = JSON.stringify(a) === JSON.stringify(b)
      && (reference === undefined || JSON.stringify(a[a.length - 1]) === JSON.stringify(essence(reference)));
    if (!same) {
      throw new Error(`decision depends on bytes past the end of the packet (out-of-bounds read): ${last.link} ${hex(last.bytes)}\n`
        + `  tail pattern A: ${JSON.stringify(a)}\n  tail pattern B: ${JSON.stringify(b)}`
        + (reference ? `\n  decide(): ${JSON.stringify(essence(reference))}` : ""));
    }
  }
}

export interface Step {
  bytes: Uint8Array;
  link: LinkKind;
  direction: Direction;
}

/** forwarded + dropped packets (and bytes) as the counters report them. */
export function countedTotals(dp: Datapath): { packets: number; bytes: number } {
  const c = dp.counters();
  let packets = c.forwarded.egress.packets + c.forwarded.ingress.packets;
  let bytes = c.forwarded.egress.bytes + c.forwarded.ingress.bytes;
  for (const d of c.drops) {
    packets += d.packets;
    bytes += d.bytes;
  }
  return { packets, bytes };
}

/** Conntrack listing invariant: TCP tables hold TCP only, the others never TCP. */
export function checkTables(dp: Datapath): void {
  for (const r of dp.conntrack()) {
    const tcpTable = r.table === "tcp4" || r.table === "tcp6";
    if (tcpTable !== (r.tuple.proto === 6)) {
      throw new Error(`table ${r.table} holds protocol ${r.tuple.proto}: ${JSON.stringify(r.tuple)}`);
    }
    if ((r.table.endsWith("6") ? 6 : 4) !== r.tuple.family) throw new Error(`table ${r.table} holds family ${r.tuple.family}`);
  }
}

/** Every table a packet sequence can fill. */
export const SEQUENCE_TABLES: readonly TableName[] = ["tcp4", "any4", "tcp6", "any6", "frag4", "frag6"];

/**
 * What must hold after each packet of a sequence: the verdict's invariants,
 * what the conntrack tables hold, the counters at `counted` (every decided
 * packet and byte), and no table over its capacity. `where` names the trace.
 */
export function checkSequenceStep(dp: Datapath, v: PacketVerdict, b: { bytes: Uint8Array; link: LinkKind }, counted: { packets: number; bytes: number }, where: () => string): void {
  checkVerdict(v, b.bytes, b.link);
  checkTables(dp);
  expect(countedTotals(dp), `counters ${where()}`).toEqual(counted);
  for (const t of SEQUENCE_TABLES) {
    const info = dp.tableInfo(t);
    expect(info.count, `${t} over capacity ${where()}`).toBeLessThanOrEqual(info.capacity);
  }
}

// ---------------------------------------------------------------------------
// Arbitrary bytes, optionally nudged towards parseable headers

/**
 * Byte strings of 0..1600 bytes. Half of them are left alone; the others get
 * plausible header bytes patched in (EtherType, IP version, IP length fields
 * matching the buffer) so the parser gets past its first checks. Every byte
 * string is still reachable.
 */
export function arbitraryFrame(link: LinkKind): fc.Arbitrary<Uint8Array> {
  const bytes = fc.oneof(
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 1600, size: "max" }) },
    { weight: 2, arbitrary: fc.uint8Array({ maxLength: 160, size: "max" }) },
  );
  const nudge = fc.record({
    on: fc.boolean(),
    version: fc.constantFrom(4, 6),
    vlan: fc.boolean(),
    etherType: fc.constantFrom(0x0800, 0x86dd, 0x0806, 0x8100, 0x88a8),
    fixLength: fc.boolean(),
    ihl: fc.constantFrom(5, 5, 6, 15, -1),
    nextHeader: fc.constantFrom(6, 17, 1, 58, 0, 43, 44, 51, 60, 59, -1),
  });
  return fc.tuple(bytes, nudge).map(([raw, n]) => {
    const b = raw.slice();
    if (!n.on) return b;
    let l3 = 0;
    if (link === "ethernet") {
      const tagged = n.vlan && b.length >= 18;
      l3 = tagged ? 18 : 14;
      if (b.length < 14) return b;
      const et = n.etherType === 0x0800 || n.etherType === 0x86dd ? (n.version === 4 ? 0x0800 : 0x86dd) : n.etherType;
      if (tagged) {
        b[12] = 0x81; b[13] = 0x00;
        b[16] = et >> 8; b[17] = et & 0xff;
      } else {
        b[12] = et >> 8; b[13] = et & 0xff;
      }
    }
    if (b.length <= l3) return b;
    b[l3] = (n.version << 4) | (n.version === 4 && n.ihl >= 0 ? n.ihl : b[l3]! & 0x0f);
    const rest = b.length - l3;
    if (n.version === 4 && rest >= 20) {
      if (n.fixLength) { b[l3 + 2] = rest >> 8; b[l3 + 3] = rest & 0xff; }
      if (n.nextHeader >= 0) b[l3 + 9] = n.nextHeader;
    }
    if (n.version === 6 && rest >= 40) {
      if (n.fixLength) { b[l3 + 4] = (rest - 40) >> 8; b[l3 + 5] = (rest - 40) & 0xff; }
      if (n.nextHeader >= 0) b[l3 + 6] = n.nextHeader;
    }
    return b;
  });
}

// ---------------------------------------------------------------------------
// Valid packets

export type Expect = { verdict: "pass"; ct: CtOutcome } | { verdict: "drop"; reason: string };

/** A field that mutations aim at. */
export interface Field {
  off: number;
  kind: "u16" | "u8" | "nibbleLow" | "nibbleHigh" | "proto" | "icmpType" | "etherType";
}

export interface Sample {
  name: string;
  link: LinkKind;
  /** The frame under test. */
  bytes: Uint8Array;
  /** What it gets alone, in direction egress, with empty tables. */
  fresh: Expect;
  /** Frames (egress) that put the flow or datagram in place. */
  setup?: Uint8Array[];
  /** Directions the subject may take after the setup, and what it gets then. */
  setupDirections?: Direction[];
  afterSetup?: Expect;
  /** Where the length, header-length, protocol and type fields are. */
  fields: Field[];
}

const PASS_NEW: Expect = { verdict: "pass", ct: "new" };
const NONE: Expect = { verdict: "pass", ct: "none" };

const addr4 = fc.uint8Array({ minLength: 4, maxLength: 4 });
const addr6 = fc.uint8Array({ minLength: 16, maxLength: 16 });
const port = fc.oneof(fc.integer({ min: 0, max: 0xffff }), fc.constantFrom(53, 80, 443, 1024));
const payload = fc.oneof(
  { weight: 3, arbitrary: fc.uint8Array({ maxLength: 48 }) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 400, size: "max" }) },
);

const tcpFlagsArb: fc.Arbitrary<TcpFlags> = fc.record({
  fin: fc.boolean(), syn: fc.boolean(), rst: fc.boolean(), psh: fc.boolean(),
  ack: fc.boolean(), urg: fc.boolean(), ece: fc.boolean(), cwr: fc.boolean(),
});

const tcpOpts = fc.oneof(
  fc.constant(new Uint8Array(0)),
  fc.constant(tcpOptions({ mss: 1460, sackPermitted: true, timestamp: { value: 1, echo: 0 }, windowScale: 7 })),
  fc.uint8Array({ maxLength: 40 }),
);

type L4Kind = "tcp" | "udp" | "echo";

interface L4Spec {
  kind: L4Kind;
  sport: number;
  dport: number;
  flags: TcpFlags;
  options: Uint8Array;
  request: boolean;
  payload: Uint8Array;
}

const l4Arb = (kinds: L4Kind[]): fc.Arbitrary<L4Spec> => fc.record({
  kind: fc.constantFrom(...kinds),
  sport: port,
  dport: port,
  flags: tcpFlagsArb,
  options: tcpOpts,
  request: fc.boolean(),
  payload,
});

function build4(h: { src: Uint8Array; dst: Uint8Array; options?: Uint8Array; id?: number }, l4: L4Spec): Uint8Array {
  const p = packet4({ src: h.src, dst: h.dst, options: h.options, id: h.id });
  if (l4.kind === "tcp") return p.tcp({ sport: l4.sport, dport: l4.dport, flags: l4.flags, options: l4.options, payload: l4.payload });
  if (l4.kind === "udp") return p.udp({ sport: l4.sport, dport: l4.dport, payload: l4.payload });
  return p.icmpEcho({ request: l4.request, id: l4.sport, seq: l4.dport, payload: l4.payload });
}

function build6(h: { src: Uint8Array; dst: Uint8Array; extHeaders?: Ipv6ExtHeaderSpec[] }, l4: L4Spec): Uint8Array {
  const p = packet6({ src: h.src, dst: h.dst, extHeaders: h.extHeaders });
  if (l4.kind === "tcp") return p.tcp({ sport: l4.sport, dport: l4.dport, flags: l4.flags, options: l4.options, payload: l4.payload });
  if (l4.kind === "udp") return p.udp({ sport: l4.sport, dport: l4.dport, payload: l4.payload });
  return p.icmp6Echo({ request: l4.request, id: l4.sport, seq: l4.dport, payload: l4.payload });
}

const ipv4Options = fc.oneof(
  { weight: 2, arbitrary: fc.constant(undefined) },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 40 }) },
  // record route (copied bit clear) and a copied option, so later fragments differ from the first
  { weight: 1, arbitrary: fc.constant(Uint8Array.of(0x07, 0x07, 0x04, 0, 0, 0, 0, 0x94, 0x04, 0, 0)) },
);

/** Extension headers the core accepts (it walks at most 4, as Cilium). */
const extHeaderArb = (allowFragment: boolean): fc.Arbitrary<Ipv6ExtHeaderSpec> =>
  fc.oneof(
    fc.record({ type: fc.constant(0 as const), body: fc.option(fc.uint8Array({ maxLength: 30 }), { nil: undefined }) }),
    fc.record({ type: fc.constant(60 as const), body: fc.option(fc.uint8Array({ maxLength: 30 }), { nil: undefined }) }),
    fc.record({ type: fc.constant(43 as const), body: fc.option(fc.uint8Array({ minLength: 2, maxLength: 38 }), { nil: undefined }) }),
    ...(allowFragment ? [fc.record({ type: fc.constant(44 as const), id: fc.nat(), fragOffset: fc.constant(0), more: fc.constant(false) })] : []),
  );

/** Mutation targets of the IP packet at `l3` inside `frame` (and of the packet an ICMP error quotes). */
function ipFields(frame: Uint8Array, l3: number, fields: Field[], depth = 0): void {
  const loc = locateIp(frame, l3);
  if (loc.family === undefined) return;
  fields.push({ off: l3, kind: "nibbleHigh" });
  if (loc.family === 4) {
    fields.push({ off: l3, kind: "nibbleLow" }, { off: l3 + 2, kind: "u16" }, { off: l3 + 6, kind: "u16" }, { off: l3 + 9, kind: "proto" });
  } else {
    fields.push({ off: l3 + 4, kind: "u16" }, { off: l3 + 6, kind: "proto" });
    for (const h of loc.extHeaders) {
      fields.push({ off: h.offset, kind: "proto" }, { off: h.offset + 1, kind: "u8" });
      if (h.type === 44) fields.push({ off: h.offset + 2, kind: "u16" });
    }
  }
  const l4 = loc.l4Offset;
  if (l4 + 8 > frame.length) return;
  if (loc.proto === 6 && l4 + 13 <= frame.length) fields.push({ off: l4 + 12, kind: "nibbleHigh" });
  if (loc.proto === 17) fields.push({ off: l4 + 4, kind: "u16" });
  if (loc.proto === 1 || loc.proto === 58) {
    fields.push({ off: l4, kind: "icmpType" });
    const t = frame[l4]!;
    const isError = loc.proto === 1 ? t === 3 || t === 11 || t === 12 : t >= 1 && t <= 4;
    if (isError && depth === 0 && l4 + 8 < frame.length) ipFields(frame, l4 + 8, fields, 1);
  }
}

function frameOf(l3pkt: Uint8Array, l2: L2Spec): { bytes: Uint8Array; link: LinkKind; l3: number } {
  if (l2.kind === "ip") return { bytes: l3pkt, link: "ip", l3: 0 };
  let f = ethernet({ vlan: l2.kind === "vlan" ? { id: l2.vlanId, pcp: l2.vlanId & 7 } : undefined }, l3pkt);
  if (l2.pad && f.length < 60) {
    const padded = new Uint8Array(60);
    padded.set(f);
    padded.fill(0xa5, f.length);
    f = padded;
  }
  return { bytes: f, link: "ethernet", l3: l2.kind === "vlan" ? 18 : 14 };
}

interface L2Spec { kind: "ip" | "eth" | "vlan"; vlanId: number; pad: boolean }
const l2Arb: fc.Arbitrary<L2Spec> = fc.record({
  kind: fc.constantFrom("ip" as const, "eth" as const, "vlan" as const),
  vlanId: fc.integer({ min: 0, max: 0xfff }),
  pad: fc.boolean(),
});

function sample(name: string, l3pkt: Uint8Array, l2: L2Spec, fresh: Expect, extra: Partial<Sample> = {}, setupL3: Uint8Array[] = []): Sample {
  const f = frameOf(l3pkt, l2);
  const fields: Field[] = [];
  if (f.link === "ethernet") {
    fields.push({ off: 12, kind: "etherType" });
    if (f.l3 === 18) fields.push({ off: 16, kind: "etherType" });
  }
  ipFields(f.bytes, f.l3, fields);
  const setup = setupL3.length > 0 ? setupL3.map((p) => frameOf(p, l2).bytes) : undefined;
  return { name, link: f.link, bytes: f.bytes, fresh, fields, ...extra, ...(setup ? { setup } : {}) };
}

/**
 * Inserts an authentication header (RFC 4302, 24 bytes) right after the fixed
 * IPv6 header. The builders do not make AH; the core walks it (length in
 * 4-byte units, minus 2). Checksums stay as they were (the core ignores them).
 */
function withAh(pkt: Uint8Array): Uint8Array {
  const ah = new Uint8Array(24);
  ah[0] = pkt[6]!;
  ah[1] = 24 / 4 - 2;
  ah.fill(0x33, 4);
  const out = new Uint8Array(pkt.length + 24);
  out.set(pkt.subarray(0, 40));
  out.set(ah, 40);
  out.set(pkt.subarray(40), 64);
  out[6] = 51;
  const plen = ((pkt[4]! << 8) | pkt[5]!) + 24;
  out[4] = plen >> 8;
  out[5] = plen & 0xff;
  return out;
}

/**
 * Plain TCP/UDP/ICMP echo over IPv4 (with options) or IPv6 (with extension
 * headers, AH among them). Five extension headers are one more than the core
 * walks (Cilium's bound): DROP_INVALID_EXTHDR.
 */
const plainArb: fc.Arbitrary<Sample> = fc.record({
  v6: fc.boolean(),
  s4: addr4, d4: addr4, s6: addr6, d6: addr6,
  options: ipv4Options,
  ext: fc.array(extHeaderArb(true), { maxLength: 5 }),
  ah: fc.boolean(),
  l4: l4Arb(["tcp", "udp", "echo"]),
  l2: l2Arb,
}).map((r) => {
  const ah = r.v6 && r.ah;
  const pkt6 = () => {
    const p = build6({ src: r.s6, dst: r.d6, extHeaders: r.ext }, r.l4);
    return ah ? withAh(p) : p;
  };
  const pkt = r.v6 ? pkt6() : build4({ src: r.s4, dst: r.d4, options: r.options }, r.l4);
  const exts = [...(ah ? [51] : []), ...r.ext.map((e) => e.type)];
  const what = r.v6 ? `ipv6${exts.length ? `+ext(${exts.join(",")})` : ""}` : `ipv4${r.options ? "+options" : ""}`;
  const fresh: Expect = r.v6 && exts.length > 4 ? { verdict: "drop", reason: "DROP_INVALID_EXTHDR" } : PASS_NEW;
  return sample(`${what}/${r.l4.kind}`, pkt, r.l2, fresh);
});

/** ICMP/ICMPv6 errors quoting a TCP, UDP or echo packet the receiver of the error sent. */
const errorArb: fc.Arbitrary<Sample> = fc.record({
  v6: fc.boolean(),
  s4: addr4, d4: addr4, r4: addr4, s6: addr6, d6: addr6, r6: addr6,
  options: ipv4Options,
  ext: fc.array(extHeaderArb(true), { maxLength: 4 }),
  l4: l4Arb(["tcp", "udp", "tcp", "udp", "echo"]),
  type4: fc.constantFrom(3, 11, 12),
  type6: fc.constantFrom(1, 2, 3, 4),
  code: fc.integer({ min: 0, max: 15 }),
  l2: l2Arb,
}).map((r) => {
  const l4 = { ...r.l4, request: true, payload: r.l4.payload.subarray(0, 32) };
  const original = r.v6 ? build6({ src: r.s6, dst: r.d6, extHeaders: r.ext }, l4) : build4({ src: r.s4, dst: r.d4, options: r.options }, l4);
  const quoted = quoteForIcmpError(original);
  const err = r.v6
    ? packet6({ src: r.r6, dst: r.s6 }).icmp6Error({ type: r.type6, code: r.code, quoted, mtu: r.type6 === 2 ? 1280 : undefined })
    : packet4({ src: r.r4, dst: r.s4 }).icmpError({ type: r.type4, code: r.code, quoted, mtu: r.type4 === 3 && r.code === 4 ? 1400 : undefined });
  return sample(`${r.v6 ? "icmp6" : "icmp4"}-error(${r.v6 ? r.type6 : r.type4})/quoting-${l4.kind}`, err, r.l2,
    { verdict: "drop", reason: "DROP_ICMP_NO_FLOW" },
    { setupDirections: ["ingress", "auto"], afterSetup: { verdict: "pass", ct: "related" } }, [original]);
});

/** Bytes a first fragment must carry: extension headers after the fragment header, and the L4 header. */
function firstFragmentNeeds(pkt: Uint8Array): number {
  const loc = locateIp(pkt, 0);
  if (loc.family === undefined) throw new Error("not IP");
  const l4hdr = loc.proto === 6 ? (pkt[loc.l4Offset + 12]! >> 4) * 4 : 8;
  const ipHeader = loc.family === 4 ? loc.l4Offset : 40;
  return loc.l4Offset - ipHeader + l4hdr;
}

/** One fragment of a fragmented TCP/UDP/echo datagram; the earlier fragments are its setup. */
const fragmentArb: fc.Arbitrary<Sample> = fc.record({
  v6: fc.boolean(),
  s4: addr4, d4: addr4, s6: addr6, d6: addr6,
  options: ipv4Options,
  ext: fc.array(extHeaderArb(false), { maxLength: 3 }),
  l4: l4Arb(["tcp", "udp", "echo"]),
  body: fc.uint8Array({ minLength: 16, maxLength: 600, size: "max" }),
  extraUnits: fc.integer({ min: 0, max: 40 }),
  id: fc.nat({ max: 0xffff }),
  pick: fc.nat(),
  l2: l2Arb,
}).map((r) => {
  const l4 = { ...r.l4, payload: r.body };
  const whole = r.v6 ? build6({ src: r.s6, dst: r.d6, extHeaders: r.ext }, l4) : build4({ src: r.s4, dst: r.d4, options: r.options, id: r.id }, l4);
  const max = Math.ceil(firstFragmentNeeds(whole) / 8) * 8 + 8 * r.extraUnits;
  const frags = r.v6 ? fragment6(whole, max, r.id) : fragment4(whole, max);
  const i = r.pick % frags.length;
  const name = `${r.v6 ? `ipv6${r.ext.length ? `+ext(${r.ext.map((e) => e.type).join(",")})` : ""}` : `ipv4${r.options ? "+options" : ""}`}`
    + `/${l4.kind}/fragment ${i + 1} of ${frags.length}`;
  if (i === 0) return sample(name, frags[0]!, r.l2, PASS_NEW);
  return sample(name, frags[i]!, r.l2, { verdict: "drop", reason: "DROP_FRAG_NOSUPPORT" },
    { setupDirections: ["egress"], afterSetup: { verdict: "pass", ct: "established" } }, frags.slice(0, i));
});

/** ARP and neighbour discovery: pass untracked. */
const untrackedArb: fc.Arbitrary<Sample> = fc.oneof(
  fc.record({ body: fc.uint8Array({ minLength: 28, maxLength: 28 }), vlan: fc.boolean(), vlanId: fc.integer({ min: 0, max: 0xfff }) }).map((r) => {
    const bytes = ethernet({ etherType: 0x0806, vlan: r.vlan ? r.vlanId : undefined }, r.body);
    const fields: Field[] = [{ off: 12, kind: "etherType" }];
    if (r.vlan) fields.push({ off: 16, kind: "etherType" });
    return { name: "arp", link: "ethernet" as const, bytes, fresh: NONE, fields };
  }),
  fc.record({ s6: addr6, t6: addr6, type: fc.constantFrom(133, 134, 135, 136, 137), l2: l2Arb, body: fc.uint8Array({ maxLength: 40 }) }).map((r) => {
    const msg = r.type === 135 || r.type === 136
      ? icmp6Ndp({ kind: r.type === 135 ? "solicit" : "advert", target: r.t6, linkAddr: "02:00:00:00:00:07" })
      : Uint8Array.from([r.type, 0, 0, 0, 0, 0, 0, 0, ...r.body]);
    const pkt = ipv6({ src: r.s6, dst: "ff02::1", hopLimit: 255, nextHeader: 58, payload: msg });
    return sample(`ndp(${r.type})`, pkt, r.l2, NONE);
  }),
);

/** Valid packets of every kind, with what the core must decide for them. */
export const validSample: fc.Arbitrary<Sample> = fc.oneof(
  { weight: 4, arbitrary: plainArb },
  { weight: 3, arbitrary: errorArb },
  { weight: 3, arbitrary: fragmentArb },
  { weight: 1, arbitrary: untrackedArb },
);

// ---------------------------------------------------------------------------
// Mutations

export type Mutation =
  | { t: "flip"; at: number; xor: number }
  | { t: "truncate"; at: number }
  | { t: "extend"; bytes: Uint8Array }
  | { t: "field"; which: number; mode: number; value: number };

export const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ t: fc.constant("flip" as const), at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ t: fc.constant("truncate" as const), at: fc.nat() }),
  fc.record({ t: fc.constant("extend" as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }),
  { weight: 3, arbitrary: fc.record({ t: fc.constant("field" as const), which: fc.nat(), mode: fc.nat({ max: 3 }), value: fc.nat({ max: 0xffff }) }) },
);

const PROTOS = [0, 1, 6, 17, 43, 44, 51, 58, 59, 60];
const ICMP_TYPES = [0, 1, 2, 3, 4, 5, 8, 11, 12, 128, 129, 133, 135, 137, 138];
const ETHERTYPES = [0x0800, 0x86dd, 0x0806, 0x8100, 0x88a8];

function fieldValue(kind: Field["kind"], current: number, mode: number, value: number): number {
  const pick = (list: number[]) => list[value % list.length]!;
  switch (kind) {
    case "nibbleLow":
    case "nibbleHigh":
      return value & 0xf;
    case "proto":
      return mode < 2 ? pick(PROTOS) : value & 0xff;
    case "icmpType":
      return mode < 2 ? pick(ICMP_TYPES) : value & 0xff;
    case "etherType":
      return mode < 2 ? pick(ETHERTYPES) : value;
    case "u8":
      return mode === 0 ? value & 0xff : mode === 1 ? (current + (value % 5) - 2) & 0xff : mode === 2 ? pick([0, 1, 0xff]) : value & 0xff;
    case "u16":
      return mode === 0 ? value : mode === 1 ? (current + (value % 33) - 16) & 0xffff : mode === 2 ? pick([0, 1, 7, 8, 20, 39, 40, 0xffff]) : value;
  }
}

/** Applies mutations in order; `fields` are the targets of the unmutated packet. Result at most 2048 bytes. */
export function mutate(input: Uint8Array, fields: Field[], muts: Mutation[]): Uint8Array {
  let b = input.slice();
  for (const m of muts) {
    switch (m.t) {
      case "flip":
        if (b.length > 0) b[m.at % b.length] ^= m.xor;
        break;
      case "truncate":
        b = b.slice(0, m.at % (b.length + 1));
        break;
      case "extend": {
        const n = new Uint8Array(Math.min(2048, b.length + m.bytes.length));
        n.set(b);
        n.set(m.bytes.subarray(0, n.length - b.length), b.length);
        b = n;
        break;
      }
      case "field": {
        if (fields.length === 0) break;
        const f = fields[m.which % fields.length]!;
        const size = f.kind === "u16" || f.kind === "etherType" ? 2 : 1;
        if (f.off + size > b.length) break;
        const cur = size === 2 ? (b[f.off]! << 8) | b[f.off + 1]! : b[f.off]!;
        const v = fieldValue(f.kind, cur, m.mode, m.value);
        if (f.kind === "nibbleLow") b[f.off] = (b[f.off]! & 0xf0) | v;
        else if (f.kind === "nibbleHigh") b[f.off] = (b[f.off]! & 0x0f) | (v << 4);
        else if (size === 2) { b[f.off] = v >> 8; b[f.off + 1] = v & 0xff; }
        else b[f.off] = v;
        break;
      }
    }
  }
  return b;
}

/** Asserts a verdict matches an expectation, with the packet in the message. */
export function expectOutcome(v: PacketVerdict, want: Expect, what: string, bytes: Uint8Array): void {
  const got = v.verdict === "pass" ? { verdict: "pass", ct: v.ct } : { verdict: "drop", reason: v.dropReason };
  expect(got, `${what}: ${hex(bytes)}`).toEqual(want);
}

// ---------------------------------------------------------------------------
// Flows and packet sequences

export interface Flow {
  v6: boolean;
  proto: "tcp" | "udp" | "echo";
  /** Host indices: the flow goes from host a to host b. */
  a: number;
  b: number;
  sport: number;
  /** Destination port, or the echo identifier. */
  dport: number;
}

const HOSTS4 = ["10.0.0.1", "10.0.0.2", "192.168.1.9"].map((s) => Uint8Array.from(s.split(".").map(Number)));
const HOSTS6 = [1, 2, 9].map((n) => Uint8Array.from([0xfd, 0, ...new Array(13).fill(0), n]));
const ROUTER4 = Uint8Array.of(10, 0, 0, 254);
const ROUTER6 = Uint8Array.from([0xfd, 0, ...new Array(13).fill(0), 0xfe]);

/** Small pools, so that flows share hosts and ports and replies of one are packets of another. */
export function flowArb(opts: { ports?: number[]; ids?: number[]; v6?: boolean; proto?: Flow["proto"] } = {}): fc.Arbitrary<Flow> {
  return fc.record({
    v6: opts.v6 === undefined ? fc.boolean() : fc.constant(opts.v6),
    proto: opts.proto === undefined ? fc.constantFrom("tcp" as const, "udp" as const, "echo" as const) : fc.constant(opts.proto),
    a: fc.nat({ max: 2 }),
    b: fc.nat({ max: 2 }),
    sport: fc.constantFrom(...(opts.ports ?? [1000, 1001])),
    dport: fc.constantFrom(...(opts.ids ?? [80, 53])),
  });
}

export interface SeqStep {
  flow: number;
  reverse: boolean;
  kind: "pkt" | "error" | "frag" | "junk";
  tcpFlags: number;
  l2: L2Spec;
  direction: Direction;
  dt: number;
  gc: boolean;
  flush: boolean;
  errType: number;
  fromRouter: boolean;
  fragId: number;
  fragPick: number;
  mutations: Mutation[];
}

const TCP_FLAG_SETS = [0x02, 0x12, 0x10, 0x18, 0x11, 0x04, 0x14, 0x01, 0x00, 0x03, 0x06];

export function seqStepArb(
  opts: { kinds?: SeqStep["kind"][]; directions?: Direction[]; maxDt?: number; gcOneIn?: number } = {},
): fc.Arbitrary<SeqStep> {
  const kinds = opts.kinds ?? ["pkt", "pkt", "pkt", "pkt", "error", "frag", "frag", "junk"];
  const maxDt = opts.maxDt ?? 40_000;
  const gcOneIn = opts.gcOneIn ?? 8;
  return fc.record({
    flow: fc.nat(),
    reverse: fc.boolean(),
    kind: fc.constantFrom(...kinds),
    tcpFlags: fc.constantFrom(...TCP_FLAG_SETS),
    l2: l2Arb,
    direction: fc.constantFrom(...(opts.directions ?? DIRECTIONS)),
    dt: fc.oneof(
      { weight: 4, arbitrary: fc.constant(0) },
      { weight: 4, arbitrary: fc.integer({ min: 1, max: Math.min(10, maxDt) }) },
      { weight: 2, arbitrary: fc.integer({ min: 1, max: Math.min(120, maxDt) }) },
      { weight: 1, arbitrary: fc.integer({ min: 1, max: maxDt }) },
    ),
    gc: fc.integer({ min: 1, max: gcOneIn }).map((n) => n === 1),
    flush: fc.integer({ min: 0, max: 29 }).map((n) => n === 0),
    errType: fc.nat(),
    fromRouter: fc.boolean(),
    fragId: fc.constantFrom(1, 2),
    fragPick: fc.nat(),
    mutations: fc.array(mutationArb, { minLength: 1, maxLength: 2 }),
  });
}

export interface BuiltStep {
  bytes: Uint8Array;
  link: LinkKind;
  /** Undefined for junk (mutated) packets: no prediction. */
  model?: ModelPkt;
}

/** The packet of a step: the flow's packet (or a fragment of it, or an ICMP error quoting it). */
export function buildStep(flows: Flow[], s: SeqStep): BuiltStep {
  const f = flows[s.flow % flows.length]!;
  const hosts = f.v6 ? HOSTS6 : HOSTS4;
  const [x, y] = s.reverse ? [hosts[f.b]!, hosts[f.a]!] : [hosts[f.a]!, hosts[f.b]!];
  const proto = f.proto === "tcp" ? 6 : f.proto === "udp" ? 17 : f.v6 ? 58 : 1;
  // echo: the forward packet is a request, the reverse one its reply
  const [sport, dport] = f.proto === "echo" ? (s.reverse ? [f.dport, 0] : [0, f.dport]) : s.reverse ? [f.dport, f.sport] : [f.sport, f.dport];
  const body = s.kind === "frag" ? new Uint8Array(40).fill(0x5a) : new Uint8Array(s.flow % 3 * 5);
  const flags: TcpFlags = {
    fin: !!(s.tcpFlags & 1), syn: !!(s.tcpFlags & 2), rst: !!(s.tcpFlags & 4), psh: !!(s.tcpFlags & 8), ack: !!(s.tcpFlags & 0x10),
  };
  const l4: L4Spec = { kind: f.proto, sport: f.proto === "echo" ? f.dport : sport, dport: f.proto === "echo" ? 1 : dport, flags, options: new Uint8Array(0), request: !s.reverse, payload: body };
  const whole = f.v6 ? build6({ src: x, dst: y }, l4) : build4({ src: x, dst: y, id: s.fragId }, l4);
  const tcpFlags = f.proto === "tcp" ? s.tcpFlags : 0;
  const base: ModelPkt = { family: f.v6 ? 6 : 4, src: x, dst: y, proto, sport, dport, tcpFlags, l3len: whole.length, frag: "none", fragId: "" };
  let l3 = whole;
  let model: ModelPkt | undefined = base;
  if (s.kind === "error") {
    const from = s.fromRouter ? (f.v6 ? ROUTER6 : ROUTER4) : y;
    const quoted = quoteForIcmpError(whole);
    l3 = f.v6
      ? packet6({ src: from, dst: x }).icmp6Error({ type: 1 + (s.errType % 4), code: 0, quoted })
      : packet4({ src: from, dst: x }).icmpError({ type: [3, 11, 12][s.errType % 3]!, code: 0, quoted });
    model = {
      family: base.family, src: from, dst: x, proto: f.v6 ? 58 : 1, sport: 0, dport: 0, tcpFlags: 0, l3len: l3.length,
      frag: "none", fragId: "", quoted: { src: x, dst: y, proto, sport, dport },
    };
  } else if (s.kind === "frag") {
    const frags = f.v6 ? fragment6(whole, 24, s.fragId) : fragment4(whole, 24);
    const i = s.fragPick % frags.length;
    l3 = frags[i]!;
    const fragId = f.v6 ? hex(Uint8Array.of(0, 0, 0, s.fragId)) : hex(Uint8Array.of(0, s.fragId));
    model = { ...base, l3len: l3.length, fragId, frag: frags.length === 1 ? "none" : i === 0 ? "first" : "later", tcpFlags: i === 0 ? tcpFlags : 0 };
  }
  const frame = frameOf(l3, s.l2);
  if (s.kind === "junk") {
    const fields: Field[] = [];
    if (frame.link === "ethernet") fields.push({ off: 12, kind: "etherType" });
    ipFields(frame.bytes, frame.l3, fields);
    return { bytes: mutate(frame.bytes, fields, s.mutations), link: frame.link };
  }
  return { bytes: frame.bytes, link: frame.link, model };
}

/** Checks a verdict and the state after it against the model; returns problems (empty when they agree). */
export function compareWithModel(model: CtModel, want: Prediction, v: PacketVerdict, post: Snapshot): string[] {
  const got = essence(v);
  const { alt, ...main } = want;
  const norm = (m: ModelVerdict) => JSON.stringify({ verdict: m.verdict, dropReason: m.dropReason, ct: m.ct, direction: m.direction, ctTable: m.ctTable });
  const g = norm(got as ModelVerdict);
  if (g !== norm(main) && !(alt && g === norm(alt))) {
    return [`verdict: core ${g}, model ${norm(main)}${alt ? ` or ${norm(alt)}` : ""}`];
  }
  const problems = model.settle(got as ModelVerdict, post);
  return [...problems, ...diffStates(model.state, post)];
}
