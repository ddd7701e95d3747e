/**
 * Synthetic TCP flows for the benchmarks. Flow `i` (0 <= i < MAX_FLOWS) is a
 * distinct 5-tuple: a client address derived from i talking to one server on
 * port 443, the way a busy endpoint sees many clients.
 *
 * Packets are made by patching a template built once with the real packet
 * builders (so the layout is right by construction) and refilling the
 * checksums. That costs about a microsecond per packet where the builders take
 * several: prefilling a million entries then takes seconds, and the JS heap
 * barely grows, which keeps the RSS figures of the memory suite readable.
 */
import type { Datapath } from "../host/datapath.js";
import type { PacketBatch } from "../host/wasm/batch.js";
import type { TableName } from "../host/wasm/core.js";
import { packet4, packet6 } from "../host/packet/build.js";
import { fillChecksums } from "../host/packet/checksum.js";
import { encodeCtTuple4, encodeCtTuple6, TupleFlags } from "../host/generated/layout.js";

export type Family = 4 | 6;
/** "syn" opens a flow (creates an entry on a miss); "ack" is a packet of an established flow. */
export type Segment = "syn" | "ack";

/** Flow ids map into a /8 (IPv4) or the low 32 bits of a /64 (IPv6); 2^24 is the smaller limit. */
export const MAX_FLOWS = 1 << 24;

const SERVER_PORT = 443;
const V4_CLIENT_NET = 0x0a000000; // 10.0.0.0/8
const V4_SERVER = Uint8Array.of(192, 0, 2, 1);
const V6_CLIENT_NET = Uint8Array.of(0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0); // fd00::/64
const V6_SERVER = Uint8Array.of(0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1); // 2001:db8::1

// Offsets patched per flow: the source address in the IP header, the source port in TCP.
const V4_SRC = 12;
const V4_SPORT = 20;
const V6_SRC = 8;
const V6_SPORT = 40;

const IPPROTO_TCP = 6;

function readU32(b: Uint8Array): number {
  return ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
}

/** Client ports vary with the flow too, so no two flows differ in the address alone. */
function clientPort(i: number): number {
  return 32768 + (i & 0x3fff);
}

export class FlowSet {
  readonly table: TableName;
  private readonly templates: Record<Segment, Uint8Array>;
  private readonly keyBytes: Uint8Array;
  private readonly addr: Uint8Array;

  constructor(readonly family: Family) {
    this.table = family === 4 ? "tcp4" : "tcp6";
    this.addr = family === 4 ? new Uint8Array(4) : V6_CLIENT_NET.slice();
    const make = (flags: { syn?: boolean; ack?: boolean }) => {
      const spec = { sport: clientPort(0), dport: SERVER_PORT, seq: 1000, ack: flags.ack ? 2000 : 0, flags };
      return family === 4
        ? packet4({ src: this.clientAddr(0).slice(), dst: V4_SERVER }).tcp(spec)
        : packet6({ src: this.clientAddr(0).slice(), dst: V6_SERVER }).tcp(spec);
    };
    this.templates = { syn: make({ syn: true }), ack: make({ ack: true }) };
    this.keyBytes = new Uint8Array(family === 4 ? 14 : 38);
  }

  private clientAddr(i: number): Uint8Array {
    if (!Number.isInteger(i) || i < 0 || i >= MAX_FLOWS) throw new RangeError(`flow id ${i} outside 0..${MAX_FLOWS - 1}`);
    const a = this.addr;
    if (this.family === 4) {
      const n = V4_CLIENT_NET + i;
      a[0] = n >>> 24; a[1] = (n >>> 16) & 255; a[2] = (n >>> 8) & 255; a[3] = n & 255;
    } else {
      a[12] = i >>> 24; a[13] = (i >>> 16) & 255; a[14] = (i >>> 8) & 255; a[15] = i & 255;
    }
    return a;
  }

  /** The client->server packet of flow i. The bytes are reused by the next call: push them before asking again. */
  packet(i: number, segment: Segment): Uint8Array {
    const p = this.templates[segment];
    const port = clientPort(i);
    if (this.family === 4) {
      p.set(this.clientAddr(i), V4_SRC);
      p[V4_SPORT] = port >>> 8; p[V4_SPORT + 1] = port & 255;
    } else {
      p.set(this.clientAddr(i), V6_SRC);
      p[V6_SPORT] = port >>> 8; p[V6_SPORT + 1] = port & 255;
    }
    return fillChecksums(p, 0);
  }

  /**
   * The conntrack key of flow i after its SYN was processed as egress: the
   * tuple as the creating packet saw it, flagged OUT (ct.h). Reused like packet().
   */
  key(i: number): Uint8Array {
    const port = clientPort(i);
    const saddr = this.clientAddr(i);
    const tuple = { sport: port, dport: SERVER_PORT, nexthdr: IPPROTO_TCP, flags: TupleFlags.TUPLE_F_OUT };
    if (this.family === 4) {
      encodeCtTuple4({ ...tuple, saddr: readU32(saddr), daddr: readU32(V4_SERVER) }, this.keyBytes);
    } else {
      encodeCtTuple6({ ...tuple, saddr, daddr: V6_SERVER }, this.keyBytes);
    }
    return this.keyBytes;
  }

  /** Clears `batch` and fills it with one `segment` packet each of flows ids[0..], sent egress. */
  fill(batch: PacketBatch, segment: Segment, flowAt: (k: number) => number, count = batch.capacity): void {
    batch.clear();
    for (let k = 0; k < count; k++) batch.push(this.packet(flowAt(k), segment), { direction: "egress" });
  }

  /**
   * Opens flows 0..count-1 (one SYN each, egress, at `now`), `batch` at a time,
   * and checks that the table gained exactly `count` entries.
   */
  open(dp: Datapath, batch: PacketBatch, count: number, now: number): void {
    const before = dp.tableInfo(this.table).count;
    for (let start = 0; start < count; start += batch.capacity) {
      this.fill(batch, "syn", (k) => start + k, Math.min(batch.capacity, count - start));
      dp.process(batch, now);
    }
    const after = dp.tableInfo(this.table).count;
    if (after - before !== count) {
      throw new Error(`opening ${count} ${this.table} flows added ${after - before} entries; expected every SYN to create one`);
    }
  }
}

/**
 * The k-th flow id of a walk that visits all of 0..n-1 in a scattered order.
 * Flows were opened in id order, so their entries sit in consecutive slots;
 * walking ids in order would let the hardware prefetcher hide the memory
 * latency a real mix of flows pays. A stride coprime to n visits every id once.
 */
export function scattered(k: number, n: number): number {
  return (k % n) * STRIDE % n;
}

// A prime larger than any n used here, so it is coprime to all of them; its
// products with k < n stay far below 2^53.
const STRIDE = 16_777_259;
