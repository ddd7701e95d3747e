// struct __sk_buff encoding for BPF_PROG_TEST_RUN: only the fields the kernel
// accepts in ctx_in can be set, everything else stays zero, and decoding reads
// what the kernel writes back. Pure data; offsets are checked against the
// header in layout.test.ts.
import { describe, expect, it } from "vitest";
import { InvalidInputError } from "../../host/errors.js";
import { decodeSkbCtx, encodeSkbCtx, SKB_CTX_OFFSETS, SKB_CTX_SIZE } from "../../host/bpf/skb-ctx.js";

/** Byte ranges the kernel lets ctx_in set (convert___skb_to_skb in net/bpf/test_run.c). */
const ALLOWED: Array<[number, number]> = [
  [SKB_CTX_OFFSETS.mark, 4],
  [SKB_CTX_OFFSETS.priority, 4],
  [SKB_CTX_OFFSETS.ingress_ifindex, 4],
  [SKB_CTX_OFFSETS.ifindex, 4],
  [SKB_CTX_OFFSETS.cb, 20],
  [SKB_CTX_OFFSETS.tstamp, 8],
  [SKB_CTX_OFFSETS.wire_len, 4],
  [SKB_CTX_OFFSETS.gso_segs, 4],
  [SKB_CTX_OFFSETS.gso_size, 4],
  [SKB_CTX_OFFSETS.hwtstamp, 8],
];

describe("encodeSkbCtx / decodeSkbCtx", () => {
  it("writes every accepted field at its offset and round-trips", () => {
    const input = {
      mark: 0xdeadbeef,
      priority: 7,
      ingressIfindex: 3,
      ifindex: 1,
      cb: [1, 2, 3, 4, 0xffffffff],
      tstamp: 123456789012345n,
      wireLen: 1500,
      gsoSegs: 2,
      gsoSize: 1448,
      hwtstamp: 0xffff_ffff_ffff_ffffn,
    };
    const bytes = encodeSkbCtx(input);
    expect(bytes).toHaveLength(SKB_CTX_SIZE);
    const d = decodeSkbCtx(bytes);
    expect({
      mark: d.mark,
      priority: d.priority,
      ingressIfindex: d.ingressIfindex,
      ifindex: d.ifindex,
      cb: d.cb,
      tstamp: d.tstamp,
      wireLen: d.wireLen,
      gsoSegs: d.gsoSegs,
      gsoSize: d.gsoSize,
      hwtstamp: d.hwtstamp,
    }).toEqual(input);
    expect([d.len, d.pktType, d.protocol, d.hash, d.tstampType]).toEqual([0, 0, 0, 0, 0]);
  });

  it("leaves every byte outside the accepted fields zero", () => {
    const bytes = encodeSkbCtx({
      mark: ~0 >>> 0,
      priority: ~0 >>> 0,
      ingressIfindex: ~0 >>> 0,
      ifindex: ~0 >>> 0,
      cb: [~0 >>> 0, ~0 >>> 0, ~0 >>> 0, ~0 >>> 0, ~0 >>> 0],
      tstamp: 0xffff_ffff_ffff_ffffn,
      wireLen: ~0 >>> 0,
      gsoSegs: ~0 >>> 0,
      gsoSize: ~0 >>> 0,
      hwtstamp: 0xffff_ffff_ffff_ffffn,
    });
    const allowed = new Set<number>();
    for (const [off, len] of ALLOWED) for (let i = off; i < off + len; i++) allowed.add(i);
    for (let i = 0; i < SKB_CTX_SIZE; i++) expect([i, bytes[i]]).toEqual([i, allowed.has(i) ? 0xff : 0]);
  });

  it("defaults to an all-zero context", () => {
    expect(encodeSkbCtx()).toEqual(new Uint8Array(SKB_CTX_SIZE));
  });

  it("rejects out-of-range values and too many cb words", () => {
    expect(() => encodeSkbCtx({ mark: -1 })).toThrow(InvalidInputError);
    expect(() => encodeSkbCtx({ mark: 2 ** 32 })).toThrow(/__sk_buff.mark must be an integer in 0..2\^32-1/);
    expect(() => encodeSkbCtx({ priority: 1.5 })).toThrow(InvalidInputError);
    expect(() => encodeSkbCtx({ cb: [0, 0, 0, 0, 0, 0] })).toThrow(/cb has 5 words, got 6/);
    expect(() => encodeSkbCtx({ cb: [0, -3] })).toThrow(/cb\[1\]/);
    expect(() => encodeSkbCtx({ tstamp: -1n })).toThrow(InvalidInputError);
  });

  it("decodes a buffer at an offset and refuses a short one", () => {
    const inner = encodeSkbCtx({ mark: 9, cb: [0, 0, 5] });
    const outer = new Uint8Array(SKB_CTX_SIZE + 16);
    outer.set(inner, 16);
    const d = decodeSkbCtx(outer.subarray(16));
    expect([d.mark, d.cb[2]]).toEqual([9, 5]);
    expect(() => decodeSkbCtx(new Uint8Array(100))).toThrow(/needs 192 bytes, got 100/);
  });
});
