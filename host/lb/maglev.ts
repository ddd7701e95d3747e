/**
 * Maglev lookup table (Eisenbud et al., NSDI 2016, section 3.4), the textbook
 * form: each backend gets offset = h1(key) % m and skip = h2(key) % (m - 1) + 1,
 * so its preference list is (offset + j * skip) % m; backends take turns
 * claiming their next still-free preferred entry until all m are taken.
 * Backends are ordered by key first, so every node computes the same table
 * from the same backend set, whatever order it learnt them in.
 */

/** FNV-1a, 64-bit, seeded by the first byte fed; two seeds give the two independent hashes. */
function fnv1a64(key: string, seed: number): bigint {
  let h = 0xcbf29ce484222325n ^ BigInt(seed);
  const bytes = new TextEncoder().encode(key);
  for (const b of bytes) {
    h ^= BigInt(b);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return h;
}

/**
 * Backend ids for the m entries of a service's Maglev table. `key` identifies
 * a backend across nodes ("addr:port/proto"); ids are what the datapath stores.
 * No backends: every entry is 0 (no backend).
 */
export function maglevTable(backends: readonly { id: number; key: string }[], m: number): Uint32Array {
  const table = new Uint32Array(m);
  const n = backends.length;
  if (n === 0) return table;
  const sorted = [...backends].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const offset = new Uint32Array(n);
  const skip = new Uint32Array(n);
  sorted.forEach((b, i) => {
    offset[i] = Number(fnv1a64(b.key, 0x5a) % BigInt(m));
    skip[i] = Number(fnv1a64(b.key, 0xa5) % BigInt(m - 1)) + 1;
  });
  const next = new Uint32Array(n);
  const taken = new Uint8Array(m);
  let filled = 0;
  while (filled < m) {
    for (let i = 0; i < n && filled < m; i++) {
      let c = (offset[i] + next[i] * skip[i]) % m;
      while (taken[c]) {
        next[i]++;
        c = (offset[i] + next[i] * skip[i]) % m;
      }
      taken[c] = 1;
      table[c] = sorted[i].id;
      next[i]++;
      filled++;
    }
  }
  return table;
}
