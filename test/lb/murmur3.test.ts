import { describe, expect, it } from "vitest";
import { fmix32, murmur3, murmur3String } from "../../host/lb/murmur3.js";

describe("murmur3 (x86, 32-bit)", () => {
  // Published test vectors of MurmurHash3_x86_32 (SMHasher and its ports).
  it("matches the reference vectors", () => {
    expect(murmur3(new Uint8Array(0), 0)).toBe(0);
    expect(murmur3(new Uint8Array(0), 1)).toBe(0x514e28b7);
    expect(murmur3(new Uint8Array(0), 0xffffffff)).toBe(0x81f16f39);
    expect(murmur3(new Uint8Array([0xff, 0xff, 0xff, 0xff]), 0)).toBe(0x76293b50);
    expect(murmur3(new Uint8Array([0x21, 0x43, 0x65, 0x87]), 0)).toBe(0xf55b516b);
    expect(murmur3(new Uint8Array([0x21, 0x43, 0x65]), 0)).toBe(0x7e4a8634);
    expect(murmur3(new Uint8Array([0x21, 0x43]), 0)).toBe(0xa0f7b07a);
    expect(murmur3(new Uint8Array([0x21]), 0)).toBe(0x72661cf4);
    expect(murmur3String("Hello, world!", 1234)).toBe(0xfaf6cdb3);
    expect(murmur3String("The quick brown fox jumps over the lazy dog", 0x9747b28c)).toBe(0x2fa826cd);
  });

  it("hashes text as UTF-8", () => {
    const text = "[fd00::1]:80/udp π";
    expect(murmur3String(text, 7)).toBe(murmur3(new TextEncoder().encode(text), 7));
  });

  it("fmix32 is a bijection on a sample (no two inputs collide)", () => {
    const seen = new Set<number>();
    for (let i = 0; i < 100_000; i++) seen.add(fmix32(i * 65537));
    expect(seen.size).toBe(100_000);
  });
});
