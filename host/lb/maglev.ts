/**
 * Maglev lookup tables: M entries (M prime), each a backend id; the datapath
 * picks entry hash(flow) % M. The table is a pure function of the backend set
 * and M, so every node computes the same one and a flow reaches the same
 * backend without any conntrack state (after a CT flush, or on another node).
 *
 * Two builders, compared in docs/maglev.md and bench/lb-fairness.ts:
 * - "plain": the Maglev paper (Eisenbud et al., NSDI 2016). Each backend walks
 *   its own permutation of the slots (offset = h1 % M, skip = h2 % (M-1) + 1)
 *   and the backends take turns claiming their next free slot.
 * - "hrw-auction" (the default, what maglevTable returns and the datapath
 *   uses, up to RENDEZVOUS_BUDGET; see maglevDefaultVariant): every (slot, backend) pair has a rendezvous score; the table is the
 *   assignment maximizing the total score with each backend holding
 *   floor(M/N) or ceil(M/N) entries, found by an auction. Same balance as plain
 *   Maglev, but removing a backend moves fewer entries: the winners shift only
 *   where prices move, instead of every later claim of the round-robin.
 * - "hrw-greedy": the same scores and capacities, assigned greedily in
 *   descending score order; kept because the report compares it.
 */
import { InvalidInputError } from "../errors.js";
import { fmix32, murmur3String } from "./murmur3.js";

/** Table sizes Cilium accepts (primes); 16381 is its default. */
export const MAGLEV_PRIMES: readonly number[] = [251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071];
export const MAGLEV_DEFAULT_M = 16381;

export type MaglevVariant = "plain" | "hrw-greedy" | "hrw-auction";
export const MAGLEV_VARIANTS: readonly MaglevVariant[] = ["plain", "hrw-greedy", "hrw-auction"];
export const MAGLEV_DEFAULT_VARIANT: MaglevVariant = "hrw-auction";

/**
 * Largest backends x entries the rendezvous builders accept: they score every
 * (slot, backend) pair, about 0.5 s at this size on the bench machine (65521
 * entries x 1000 backends is inside). Beyond it a table of 131071 entries and
 * thousands of backends would take minutes, so the default falls back to plain.
 */
export const RENDEZVOUS_BUDGET = 2 ** 26;

/** The variant maglevTable uses when none is given: hrw-auction within RENDEZVOUS_BUDGET, else plain. */
export function maglevDefaultVariant(backendCount: number, m: number): MaglevVariant {
  return backendCount * m <= RENDEZVOUS_BUDGET ? MAGLEV_DEFAULT_VARIANT : "plain";
}

export interface MaglevBackend {
  /** Backend id as stored in the backends table. */
  id: number;
  /** "addr:port/proto", e.g. "10.0.0.1:8080/tcp" or "[fd00::1]:80/udp": the only input to the hashes. */
  key: string;
}

// Seeds of the hashes. Changing any of them changes every table: they are part of the format.
const SEED_OFFSET = 0x6d61676c; // "magl"
const SEED_SKIP = 0x65763031; // "ev01"
const SEED_BACKEND = 0x68727762; // "hrwb"
const SEED_SLOT = 0x68727773; // "hrws"

/** Candidates kept per slot by the rendezvous builders; prices never push a slot past its 8th choice in practice. */
const CANDIDATES = 8;
/** Auction bid granularity as a fraction of the mean gap between a slot's best and second score (2^32 / N). */
const AUCTION_EPSILON_DIVISOR = 4096;
/** Bids per slot after which the auction gives up and fills what is left greedily (never reached in the bench). */
const AUCTION_BIDS_PER_SLOT = 256;

/** A warning when M is too small for N backends to keep each share within 1% (M > 100*N), else undefined. */
export function maglevSizeAdvice(backendCount: number, m: number): string | undefined {
  if (m > 100 * backendCount) return undefined;
  return `Maglev table size ${m} is not above 100 x ${backendCount} backends: shares may differ by more than 1%; use a larger prime from ${MAGLEV_PRIMES.join(", ")}`;
}

/**
 * The Maglev table for `backends`: length m, every entry one of the given ids,
 * each backend holding floor(m/N) or ceil(m/N) entries. Input order does not
 * matter (backends are sorted by key, by UTF-16 code units, not by locale).
 * Throws InvalidInputError for an m outside MAGLEV_PRIMES, an empty set (a
 * service without backends has no table; the datapath drops its flows with
 * "no backends"), more backends than entries, a duplicate key or id, or an id
 * that is not an unsigned 32-bit integer, or a rendezvous variant asked for
 * beyond RENDEZVOUS_BUDGET.
 */
export function maglevTable(
  backends: readonly MaglevBackend[],
  m: number,
  variant: MaglevVariant = maglevDefaultVariant(backends.length, m),
): Uint32Array {
  const sorted = validate(backends, m, variant);
  const keys = sorted.map((b) => b.key);
  const owner =
    sorted.length === 1
      ? new Int32Array(m) // one backend owns everything; the rendezvous builders need a second choice
      : variant === "plain"
        ? buildPlain(keys, m)
        : variant === "hrw-greedy"
          ? buildGreedy(keys, m)
          : buildAuction(keys, m);
  const table = new Uint32Array(m);
  for (let s = 0; s < m; s++) table[s] = sorted[owner[s]!]!.id;
  return table;
}

function validate(backends: readonly MaglevBackend[], m: number, variant: MaglevVariant): MaglevBackend[] {
  const what = "maglev table";
  if (!MAGLEV_VARIANTS.includes(variant)) {
    throw new InvalidInputError(`${what}: unknown variant ${JSON.stringify(variant)} (one of ${MAGLEV_VARIANTS.join(", ")})`);
  }
  if (!MAGLEV_PRIMES.includes(m)) {
    throw new InvalidInputError(`${what}: size ${m} is not supported; use one of the primes ${MAGLEV_PRIMES.join(", ")}`);
  }
  if (backends.length === 0) {
    throw new InvalidInputError(`${what}: no backends; a service without backends has no table and drops its flows with "no backends"`);
  }
  if (backends.length > m) {
    throw new InvalidInputError(`${what}: ${backends.length} backends do not fit in ${m} entries; use a larger size`);
  }
  if (variant !== "plain" && backends.length * m > RENDEZVOUS_BUDGET) {
    throw new InvalidInputError(
      `${what}: ${variant} with ${backends.length} backends and ${m} entries exceeds ${RENDEZVOUS_BUDGET} scored pairs; use plain or a smaller size`,
    );
  }
  const keys = new Set<string>();
  const ids = new Set<number>();
  for (const b of backends) {
    if (typeof b.key !== "string" || b.key.length === 0) throw new InvalidInputError(`${what}: backend ${b.id} has an empty key`);
    if (!Number.isInteger(b.id) || b.id < 0 || b.id > 0xffffffff) {
      throw new InvalidInputError(`${what}: backend ${b.key} has id ${b.id}, not an unsigned 32-bit integer`);
    }
    if (keys.has(b.key)) throw new InvalidInputError(`${what}: backend ${b.key} is listed twice`);
    if (ids.has(b.id)) throw new InvalidInputError(`${what}: backend id ${b.id} is used by two backends`);
    keys.add(b.key);
    ids.add(b.id);
  }
  return [...backends].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** The paper's builder; returns the index (into keys) owning each slot. */
function buildPlain(keys: readonly string[], m: number): Int32Array {
  const n = keys.length;
  const next = new Uint32Array(n);
  const skip = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    next[i] = murmur3String(keys[i]!, SEED_OFFSET) % m;
    skip[i] = (murmur3String(keys[i]!, SEED_SKIP) % (m - 1)) + 1;
  }
  const owner = new Int32Array(m).fill(-1);
  // Each permutation visits every slot (m prime, 0 < skip < m), so every turn finds a free slot.
  for (let filled = 0; ; ) {
    for (let i = 0; i < n; i++) {
      let c = next[i]!;
      const step = skip[i]!;
      while (owner[c]! >= 0) {
        c += step;
        if (c >= m) c -= m;
      }
      owner[c] = i;
      c += step;
      next[i] = c >= m ? c - m : c;
      if (++filled === m) return owner;
    }
  }
}

/**
 * Rendezvous scores: score(slot, backend) = fmix32(slotHash ^ backendHash).
 * Keeps each slot's best CANDIDATES backends, best first, as flat arrays
 * (slot s at s*k .. s*k+k-1).
 */
interface Candidates {
  k: number;
  backend: Int32Array;
  score: Float64Array;
  backendHash: Uint32Array;
  /** Entries per backend: floor(m/n), plus one for the first m%n backends by hash (ties by key order). */
  capacity: Int32Array;
}

function slotHash(s: number): number {
  return fmix32(s ^ SEED_SLOT);
}

function candidates(keys: readonly string[], m: number): Candidates {
  const n = keys.length;
  const k = Math.min(CANDIDATES, n);
  const backendHash = new Uint32Array(n);
  for (let i = 0; i < n; i++) backendHash[i] = murmur3String(keys[i]!, SEED_BACKEND);
  const backend = new Int32Array(m * k);
  const score = new Float64Array(m * k);
  for (let s = 0; s < m; s++) {
    const hs = slotHash(s);
    const base = s * k;
    let kept = 0;
    let worstKept = -1; // the k-th best score once k are kept: most pairs fail this one comparison
    for (let b = 0; b < n; b++) {
      const a = fmix32(hs ^ backendHash[b]!);
      if (a <= worstKept) continue;
      // Insertion into the sorted candidate list; strict < keeps the lower index first on ties.
      let j = base + (kept < k ? kept++ : k - 1);
      while (j > base && score[j - 1]! < a) {
        score[j] = score[j - 1]!;
        backend[j] = backend[j - 1]!;
        j--;
      }
      score[j] = a;
      backend[j] = b;
      if (kept === k) worstKept = score[base + k - 1]!;
    }
  }
  const capacity = new Int32Array(n).fill(Math.floor(m / n));
  const byHash = Array.from({ length: n }, (_, i) => i).sort((x, y) => backendHash[x]! - backendHash[y]! || x - y);
  for (let r = 0; r < m % n; r++) capacity[byHash[r]!]!++;
  return { k, backend, score, backendHash, capacity };
}

/** Gives every unassigned slot its best-scoring backend that still has room (full scan: rare or tiny). */
function fillRemaining(owner: Int32Array, count: Int32Array, c: Candidates): void {
  const n = count.length;
  for (let s = 0; s < owner.length; s++) {
    if (owner[s]! >= 0) continue;
    const hs = slotHash(s);
    let best = -1;
    let bestScore = -1;
    for (let b = 0; b < n; b++) {
      if (count[b]! >= c.capacity[b]!) continue;
      const a = fmix32(hs ^ c.backendHash[b]!);
      if (a > bestScore) {
        bestScore = a;
        best = b;
      }
    }
    owner[s] = best;
    count[best]!++;
  }
}

/** Pairs in descending score order; a pair is taken while its slot is free and its backend has room. */
function buildGreedy(keys: readonly string[], m: number): Int32Array {
  const c = candidates(keys, m);
  const pairs = m * c.k;
  // score * 2^21 + pair index is below 2^53 (pairs <= 131071 * 8 < 2^21): exact in a double, sorts by score then index.
  const order = new Float64Array(pairs);
  for (let p = 0; p < pairs; p++) order[p] = c.score[p]! * 2 ** 21 + p;
  order.sort();
  const owner = new Int32Array(m).fill(-1);
  const count = new Int32Array(keys.length);
  for (let j = pairs - 1; j >= 0; j--) {
    const p = order[j]! % 2 ** 21;
    const s = Math.floor(p / c.k);
    const b = c.backend[p]!;
    if (owner[s]! < 0 && count[b]! < c.capacity[b]!) {
      owner[s] = b;
      count[b]!++;
    }
  }
  fillRemaining(owner, count, c);
  return owner;
}

/**
 * Auction (Bertsekas) for the capacitated assignment maximizing the total
 * score. A backend with capacity c is c copies; each copy has a price and a
 * full backend's price is its cheapest copy's (a min-heap per backend). An
 * unassigned slot bids for the backend with the best score minus price,
 * raising that price by its margin over the second best plus epsilon, and
 * evicts the holder of the cheapest copy if the backend is full. Slots bid in
 * a FIFO order starting 0..m-1, so the result is a pure function of the
 * backend set. Prices are integers in doubles: exact, identical everywhere.
 */
function buildAuction(keys: readonly string[], m: number): Int32Array {
  const c = candidates(keys, m);
  const n = keys.length;
  const k = c.k;
  const stride = Math.ceil(m / n);
  const heapPrice = new Float64Array(n * stride);
  const heapSlot = new Int32Array(n * stride);
  const count = new Int32Array(n);
  const owner = new Int32Array(m).fill(-1);
  const epsilon = Math.max(1, Math.floor(2 ** 32 / n / AUCTION_EPSILON_DIVISOR));
  const queue = new Int32Array(m); // at most m slots are ever unassigned at once
  for (let s = 0; s < m; s++) queue[s] = s;
  let head = 0;
  let waiting = m;
  const bidLimit = m * AUCTION_BIDS_PER_SLOT;
  for (let bids = 0; waiting > 0 && bids < bidLimit; bids++) {
    const s = queue[head]!;
    head = head + 1 === m ? 0 : head + 1;
    waiting--;
    let best = -1;
    let bestValue = -Infinity;
    let secondValue = -Infinity;
    for (let j = s * k, end = j + k; j < end; j++) {
      const b = c.backend[j]!;
      const value = c.score[j]! - (count[b]! < c.capacity[b]! ? 0 : heapPrice[b * stride]!);
      if (value > bestValue) {
        secondValue = bestValue;
        bestValue = value;
        best = b;
      } else if (value > secondValue) {
        secondValue = value;
      }
    }
    const cap = c.capacity[best]!;
    const base = best * stride;
    const full = count[best]! === cap;
    const price = (full ? heapPrice[base]! : 0) + (bestValue - secondValue) + epsilon;
    let at: number;
    if (!full) {
      at = count[best]!++;
      while (at > 0) {
        const parent = (at - 1) >> 1;
        if (heapPrice[base + parent]! <= price) break;
        heapPrice[base + at] = heapPrice[base + parent]!;
        heapSlot[base + at] = heapSlot[base + parent]!;
        at = parent;
      }
    } else {
      const evicted = heapSlot[base]!;
      owner[evicted] = -1;
      queue[(head + waiting) % m] = evicted;
      waiting++;
      at = 0;
      for (;;) {
        let child = 2 * at + 1;
        if (child >= cap) break;
        if (child + 1 < cap && heapPrice[base + child + 1]! < heapPrice[base + child]!) child++;
        if (heapPrice[base + child]! >= price) break;
        heapPrice[base + at] = heapPrice[base + child]!;
        heapSlot[base + at] = heapSlot[base + child]!;
        at = child;
      }
    }
    heapPrice[base + at] = price;
    heapSlot[base + at] = s;
    owner[s] = best;
  }
  if (waiting > 0) fillRemaining(owner, count, c);
  return owner;
}
