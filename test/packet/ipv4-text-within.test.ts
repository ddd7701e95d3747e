/**
 * ipv4TextWithin (host/packet/cidr.ts), the allocation-free containment check
 * the route table runs over every ipcache entry, against the strict reader
 * and prefixContains: the same answer for every prefix the reader accepts,
 * and no answer (undefined) for any text it refuses.
 */
import { describe, expect, it } from "vitest";
import { ipv4TextWithin, parsePrefix, prefixContains, readCidr } from "../../host/packet/cidr.js";
import { seededRandom } from "../support/seeded-random.js";

describe("ipv4TextWithin", () => {
  it("answers as prefixContains(outer, parsePrefix(text)) for 20,000 random canonical IPv4 prefixes", () => {
    const r = seededRandom(11);
    const rand = (n: number) => Math.floor(r() * n);
    const outers = ["0.0.0.0/0", "10.0.0.0/8", "10.64.0.0/10", "10.64.34.0/24", "10.64.34.202/32", "192.168.0.0/16", "128.0.0.0/1", "fd00::/8"].map((t) => parsePrefix(t, "outer"));
    let inside = 0;
    for (let n = 0; n < 20_000; n++) {
      const length = rand(33);
      // addresses near the outers' networks, so both answers are common
      const base = [10, 64 + rand(2), 34 + rand(2), rand(256)];
      if (r() < 0.3) base[0] = rand(256);
      const addr = (((base[0]! << 24) | (base[1]! << 16) | (base[2]! << 8) | base[3]!) >>> 0);
      const net = length === 0 ? 0 : Math.floor(addr / 2 ** (32 - length)) * 2 ** (32 - length);
      const text = `${net >>> 24}.${(net >>> 16) & 255}.${(net >>> 8) & 255}.${net & 255}/${length}`;
      const inner = parsePrefix(text, "inner");
      for (const outer of outers) {
        const fast = ipv4TextWithin(outer, text);
        expect(fast, `${outer.text} contains ${text}`).toBe(prefixContains(outer, inner));
        if (fast) inside++;
      }
    }
    expect(inside).toBeGreaterThan(10_000);
  });

  it("has no answer for what the strict reader refuses or for IPv6, so the caller parses and reports it", () => {
    const outer = parsePrefix("10.0.0.0/8", "outer");
    for (const text of ["10.1.0.5/24", "010.1.0.0/16", "10.00.0.0/16", "10.1.0.0/33", "10.1.0.0/", "10.1.0.0", "10.1.0/24", "10.1.0.0.0/32", "256.1.0.0/16", "10.1.0.0/024", " 10.1.0.0/16", "fd00::/8", ""]) {
      expect(ipv4TextWithin(outer, text), text).toBeUndefined();
    }
    for (const text of ["10.1.0.5/24", "010.1.0.0/16", "10.00.0.0/16", "10.1.0.0/33", "256.1.0.0/16"]) expect("problem" in readCidr(text), text).toBe(true);
  });
});
