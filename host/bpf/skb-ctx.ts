/**
 * struct __sk_buff as bytes, for BPF_PROG_TEST_RUN's ctx_in / ctx_out.
 *
 * The kernel (net/bpf/test_run.c, convert___skb_to_skb) copies only a few
 * fields from ctx_in into the test skb and rejects the run with EINVAL if any
 * other byte is non-zero. So encoding accepts exactly those fields, and
 * decoding reads everything (ctx_out is filled from the skb after the run).
 *
 * Offsets are those of <linux/bpf.h> (uapi, stable: fields are only ever
 * appended); test/bpf/layout.test.ts compiles a C program against the
 * installed header and compares. Multi-byte fields are in host byte order.
 */
import { endianness } from "node:os";
import { InvalidInputError } from "../errors.js";

/** sizeof(struct __sk_buff) on Linux >= 5.16 (hwtstamp is the last field). */
export const SKB_CTX_SIZE = 192;

/** offsetof(struct __sk_buff, field). */
export const SKB_CTX_OFFSETS = {
  len: 0,
  pkt_type: 4,
  mark: 8,
  queue_mapping: 12,
  protocol: 16,
  vlan_present: 20,
  vlan_tci: 24,
  vlan_proto: 28,
  priority: 32,
  ingress_ifindex: 36,
  ifindex: 40,
  tc_index: 44,
  cb: 48,
  hash: 68,
  tc_classid: 72,
  data: 76,
  data_end: 80,
  napi_id: 84,
  family: 88,
  data_meta: 140,
  tstamp: 152,
  wire_len: 160,
  gso_segs: 164,
  gso_size: 176,
  tstamp_type: 180,
  hwtstamp: 184,
} as const;

/** Number of u32 slots in skb->cb (qdisc_skb_cb's 20 bytes of data). */
export const SKB_CB_WORDS = 5;

/** The fields the kernel accepts in ctx_in; every other byte must be zero. */
export interface SkbCtxInput {
  mark?: number;
  priority?: number;
  /** skb->skb_iif; allowed since Linux 5.17. */
  ingressIfindex?: number;
  /** Device the test skb is attached to; must exist if > 1 (else ENODEV). */
  ifindex?: number;
  /** Up to 5 u32 words of skb->cb. */
  cb?: readonly number[];
  tstamp?: bigint;
  /** 0 means "same as the data length"; else >= data length. */
  wireLen?: number;
  gsoSegs?: number;
  gsoSize?: number;
  hwtstamp?: bigint;
}

/** Every field of struct __sk_buff that user space can meaningfully read back. */
export interface SkbCtx {
  len: number;
  pktType: number;
  mark: number;
  queueMapping: number;
  protocol: number;
  vlanPresent: number;
  vlanTci: number;
  vlanProto: number;
  priority: number;
  ingressIfindex: number;
  ifindex: number;
  tcIndex: number;
  cb: number[];
  hash: number;
  tcClassid: number;
  tstamp: bigint;
  wireLen: number;
  gsoSegs: number;
  gsoSize: number;
  tstampType: number;
  hwtstamp: bigint;
}

const LE = endianness() === "LE";

function u32(name: string, v: number | undefined): number {
  if (v === undefined) return 0;
  if (!Number.isInteger(v) || v < 0 || v > 0xffff_ffff) {
    throw new InvalidInputError(`__sk_buff.${name} must be an integer in 0..2^32-1, got ${v}`);
  }
  return v;
}

function u64(name: string, v: bigint | undefined): bigint {
  if (v === undefined) return 0n;
  if (v < 0n || v > 0xffff_ffff_ffff_ffffn) {
    throw new InvalidInputError(`__sk_buff.${name} must be in 0..2^64-1, got ${v}`);
  }
  return v;
}

/** A ctx_in buffer holding `input`; validates everything before writing anything. */
export function encodeSkbCtx(input: SkbCtxInput = {}): Uint8Array {
  const cb = input.cb ?? [];
  if (cb.length > SKB_CB_WORDS) {
    throw new InvalidInputError(`__sk_buff.cb has ${SKB_CB_WORDS} words, got ${cb.length}`);
  }
  const words: Array<[number, number]> = [
    [SKB_CTX_OFFSETS.mark, u32("mark", input.mark)],
    [SKB_CTX_OFFSETS.priority, u32("priority", input.priority)],
    [SKB_CTX_OFFSETS.ingress_ifindex, u32("ingress_ifindex", input.ingressIfindex)],
    [SKB_CTX_OFFSETS.ifindex, u32("ifindex", input.ifindex)],
    [SKB_CTX_OFFSETS.wire_len, u32("wire_len", input.wireLen)],
    [SKB_CTX_OFFSETS.gso_segs, u32("gso_segs", input.gsoSegs)],
    [SKB_CTX_OFFSETS.gso_size, u32("gso_size", input.gsoSize)],
    ...cb.map((w, i): [number, number] => [SKB_CTX_OFFSETS.cb + 4 * i, u32(`cb[${i}]`, w)]),
  ];
  const tstamp = u64("tstamp", input.tstamp);
  const hwtstamp = u64("hwtstamp", input.hwtstamp);

  const bytes = new Uint8Array(SKB_CTX_SIZE);
  const view = new DataView(bytes.buffer);
  for (const [off, v] of words) view.setUint32(off, v, LE);
  view.setBigUint64(SKB_CTX_OFFSETS.tstamp, tstamp, LE);
  view.setBigUint64(SKB_CTX_OFFSETS.hwtstamp, hwtstamp, LE);
  return bytes;
}

/** Reads a ctx_out buffer (at least SKB_CTX_SIZE bytes). */
export function decodeSkbCtx(bytes: Uint8Array): SkbCtx {
  if (bytes.length < SKB_CTX_SIZE) {
    throw new InvalidInputError(`__sk_buff needs ${SKB_CTX_SIZE} bytes, got ${bytes.length}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const r = (off: number): number => view.getUint32(off, LE);
  const O = SKB_CTX_OFFSETS;
  return {
    len: r(O.len),
    pktType: r(O.pkt_type),
    mark: r(O.mark),
    queueMapping: r(O.queue_mapping),
    protocol: r(O.protocol),
    vlanPresent: r(O.vlan_present),
    vlanTci: r(O.vlan_tci),
    vlanProto: r(O.vlan_proto),
    priority: r(O.priority),
    ingressIfindex: r(O.ingress_ifindex),
    ifindex: r(O.ifindex),
    tcIndex: r(O.tc_index),
    cb: Array.from({ length: SKB_CB_WORDS }, (_, i) => r(O.cb + 4 * i)),
    hash: r(O.hash),
    tcClassid: r(O.tc_classid),
    tstamp: view.getBigUint64(O.tstamp, LE),
    wireLen: r(O.wire_len),
    gsoSegs: r(O.gso_segs),
    gsoSize: r(O.gso_size),
    tstampType: bytes[O.tstamp_type]!,
    hwtstamp: view.getBigUint64(O.hwtstamp, LE),
  };
}
