/**
 * Maglev lookup tables: M entries (M prime), each a backend id; the datapath
 * picks entry hash(flow) % M. The table is a pure function of the backend set
 * and M, so every node computes the same one and a flow reaches the same
 * backend without any conntrack state (after a CT flush, or on another node).
 *
 * Builders, compared in docs/maglev.md and bench/lb-fairness.ts:
 * - "plain": the Maglev paper (Eisenbud et al., NSDI 2016). Each backend walks
 *   its own permutation of the slots (offset = h1 % M, skip = h2 % (M-1) + 1)
 *   and the backends take turns claiming their next free slot.
 * - "perm-auction" (the default: what maglevTable returns, what the datapath
 *   uses): the same permutations, but a slot's candidates are the backends
 *   that list it among their first 8*M/N positions, scored by that position,
 *   and the table is the assignment maximizing the total score with each
 *   backend holding floor(M/N) or ceil(M/N) entries, found by an auction.
 *   Same balance as plain Maglev; removing a backend moves fewer entries,
 *   because the others shift only where prices move instead of at every later
 *   turn of the round-robin.
 * - "hrw-auction", "hrw-greedy": rendezvous scores (every slot x backend pair
 *   hashed, a slot keeps its best 8) with the auction, or taken greedily in
 *   descending score order. Kept for the report: hrw-auction moves as few
 *   entries as perm-auction but costs O(M*N) to score.
 */
import { InvalidInputError } from "../errors.js";
import { fmix32, murmur3String } from "./murmur3.js";

/** Table sizes Cilium accepts (primes); 16381 is its default. */
export const MAGLEV_PRIMES: readonly number[] = [251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071];
export const MAGLEV_DEFAULT_M = 16381;

export type MaglevVariant = "plain" | "perm-auction" | "hrw-auction" | "hrw-greedy";
export const MAGLEV_VARIANTS: readonly MaglevVariant[] = ["plain", "perm-auction", "hrw-auction", "hrw-greedy"];
export const MAGLEV_DEFAULT_VARIANT: MaglevVariant = "perm-auction";

/**
 * Largest backends x entries the hrw-* builders accept: they score every
 * (slot, backend) pair, about 0.5 s at this size on the bench machine (65521
 * entries x 1000 backends is inside); 131071 entries and thousands of
 * backends would take minutes.
 */
export const RENDEZVOUS_BUDGET = 2 ** 26;

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

/**
 * Candidates per slot: kept by hrw-*, on average for perm-auction. Fewer
 * candidates move more entries (4 for perm-auction: 1.70x the ideal at N=100
 * instead of 1.58x); more would cost build time in proportion.
 */
const CANDIDATES = 8;
/** Auction bid granularity: this fraction of the typical gap between a slot's two best scores. */
const AUCTION_EPSILON_DIVISOR = 4096;
/**
 * Bids per slot after which the auction stops and the slots still waiting
 * are filled directly. The bench's sizes (M/N >= 16) need 1 to 4; only near
 * N = M (one entry per backend) do price wars run this long.
 */
const AUCTION_BIDS_PER_SLOT = 16;

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
 * that is not an unsigned 32-bit integer, or an hrw-* variant asked for
 * beyond RENDEZVOUS_BUDGET.
 */
export function maglevTable(
  backends: readonly MaglevBackend[],
  m: number,
  variant: MaglevVariant = MAGLEV_DEFAULT_VARIANT,
): Uint32Array {
  const sorted = validate(backends, m, variant);
  const keys = sorted.map((b) => b.key);
  const owner = sorted.length === 1 ? new Int32Array(m) : build(keys, m, variant);
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
  if (variant.startsWith("hrw-") && backends.length * m > RENDEZVOUS_BUDGET) {
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

function build(keys: readonly string[], m: number, variant: MaglevVariant): Int32Array {
  switch (variant) {
    case "plain":
      return buildPlain(keys, m);
    case "perm-auction":
      return auction(permutationCandidates(keys, m));
    case "hrw-auction":
      return auction(rendezvousCandidates(keys, m));
    case "hrw-greedy":
      return greedy(rendezvousCandidates(keys, m));
  }
}

/** offset and skip of each backend's permutation j -> (offset + j*skip) % m. */
function permutations(keys: readonly string[], m: number): { offset: Uint32Array; skip: Uint32Array } {
  const n = keys.length;
  const offset = new Uint32Array(n);
  const skip = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    offset[i] = murmur3String(keys[i]!, SEED_OFFSET) % m;
    skip[i] = (murmur3String(keys[i]!, SEED_SKIP) % (m - 1)) + 1;
  }
  return { offset, skip };
}

/** The paper's builder; returns the index (into keys) owning each slot. */
function buildPlain(keys: readonly string[], m: number): Int32Array {
  const n = keys.length;
  const { offset: next, skip } = permutations(keys, m);
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
 * An assignment problem: slot s may go to backend[j] for j in
 * start[s] .. start[s+1]-1, worth score[j] (integers, exact in doubles);
 * backend b takes at most capacity[b] slots, and the capacities sum to m.
 */
interface Candidates {
  m: number;
  start: Int32Array;
  backend: Int32Array;
  score: Float64Array;
  /** A slot with a single candidate bids as if its second best were this much worse. */
  scoreSpan: number;
  /** About the gap between a slot's two best scores: the scale of epsilon. */
  typicalGap: number;
  /** floor(m/n), plus one for the first m%n backends in order of their hash (then key order). */
  capacity: Int32Array;
}

function capacities(m: number, backendHash: Uint32Array): Int32Array {
  const n = backendHash.length;
  const capacity = new Int32Array(n).fill(Math.floor(m / n));
  const byHash = Array.from({ length: n }, (_, i) => i).sort((x, y) => backendHash[x]! - backendHash[y]! || x - y);
  for (let r = 0; r < m % n; r++) capacity[byHash[r]!]!++;
  return capacity;
}

function backendHashes(keys: readonly string[]): Uint32Array {
  return Uint32Array.from(keys, (k) => murmur3String(k, SEED_BACKEND));
}

function slotHash(s: number): number {
  return fmix32(s ^ SEED_SLOT);
}

/**
 * perm-auction's candidates: backend i lists the first ceil(8m/n) slots of
 * its permutation (all m when that is more), so a slot has 8 candidates on
 * average. Score = positions left in the list (earlier is better) times 4096,
 * plus 12 bits of a pair hash so equal positions do not tie. O(8m), whatever n.
 */
function permutationCandidates(keys: readonly string[], m: number): Candidates {
  const n = keys.length;
  const listed = Math.min(m, Math.ceil((CANDIDATES * m) / n));
  const { offset, skip } = permutations(keys, m);
  const backendHash = backendHashes(keys);
  const start = new Int32Array(m + 1);
  for (let i = 0; i < n; i++) {
    for (let j = 0, c = offset[i]!; j < listed; j++) {
      start[c + 1]!++;
      c += skip[i]!;
      if (c >= m) c -= m;
    }
  }
  for (let s = 0; s < m; s++) start[s + 1]! += start[s]!;
  const fill = start.slice(0, m);
  const backend = new Int32Array(n * listed);
  const score = new Float64Array(n * listed);
  for (let i = 0; i < n; i++) {
    for (let j = 0, c = offset[i]!; j < listed; j++) {
      const at = fill[c]!++;
      backend[at] = i;
      score[at] = (listed - j) * 4096 + (fmix32(slotHash(c) ^ backendHash[i]!) >>> 20);
      c += skip[i]!;
      if (c >= m) c -= m;
    }
  }
  const span = (listed + 1) * 4096;
  return { m, start, backend, score, scoreSpan: span, typicalGap: span / CANDIDATES, capacity: capacities(m, backendHash) };
}

/**
 * hrw-*'s candidates: score(slot, backend) = fmix32(slotHash ^ backendHash);
 * a slot keeps its best 8, best first. O(m*n).
 */
function rendezvousCandidates(keys: readonly string[], m: number): Candidates {
  const n = keys.length;
  const k = Math.min(CANDIDATES, n);
  const backendHash = backendHashes(keys);
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
  const start = Int32Array.from({ length: m + 1 }, (_, s) => s * k);
  return { m, start, backend, score, scoreSpan: 2 ** 32, typicalGap: 2 ** 32 / n, capacity: capacities(m, backendHash) };
}

/**
 * Completes a partial assignment: each slot still without a backend takes its
 * best candidate with room, else the next backend with room by index. Linear,
 * and deterministic like everything else here.
 */
function fillRemaining(owner: Int32Array, count: Int32Array, c: Candidates): void {
  let next = 0;
  for (let s = 0; s < c.m; s++) {
    if (owner[s]! >= 0) continue;
    let best = -1;
    for (let j = c.start[s]!; j < c.start[s + 1]!; j++) {
      const b = c.backend[j]!;
      if (count[b]! < c.capacity[b]! && (best < 0 || c.score[j]! > c.score[best]!)) best = j;
    }
    let b: number;
    if (best >= 0) {
      b = c.backend[best]!;
    } else {
      while (count[next]! >= c.capacity[next]!) next++; // capacities sum to m: one has room
      b = next;
    }
    owner[s] = b;
    count[b]!++;
  }
}

/** Candidate pairs in descending score order; a pair is taken while its slot is free and its backend has room. */
function greedy(c: Candidates): Int32Array {
  const pairs = c.start[c.m]!;
  const slotOf = new Int32Array(pairs);
  for (let s = 0; s < c.m; s++) slotOf.fill(s, c.start[s]!, c.start[s + 1]!);
  // score * 2^21 + pair index stays below 2^53 (scores < 2^32, pairs < 2^21): exact, sorts by score then index.
  const order = new Float64Array(pairs);
  for (let p = 0; p < pairs; p++) order[p] = c.score[p]! * 2 ** 21 + p;
  order.sort();
  const owner = new Int32Array(c.m).fill(-1);
  const count = new Int32Array(c.capacity.length);
  for (let j = pairs - 1; j >= 0; j--) {
    const p = order[j]! % 2 ** 21;
    const s = slotOf[p]!;
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
 * score. A backend with capacity k is k copies; each copy has a price and a
 * full backend's price is its cheapest copy's (a min-heap per backend). A
 * waiting slot bids for the candidate with the best score minus price,
 * raising that price by its margin over its second best plus epsilon, and
 * evicts the holder of the cheapest copy if the backend is full. Slots bid in
 * FIFO order starting 0..m-1, so the result is a pure function of the backend
 * set. Prices are integers in doubles: exact, identical on every machine.
 */
function auction(c: Candidates): Int32Array {
  const { m, start, backend, score, capacity } = c;
  const n = capacity.length;
  const stride = Math.ceil(m / n);
  const heapPrice = new Float64Array(n * stride);
  const heapSlot = new Int32Array(n * stride);
  const count = new Int32Array(n);
  const owner = new Int32Array(m).fill(-1);
  const epsilon = Math.max(1, Math.floor(c.typicalGap / AUCTION_EPSILON_DIVISOR));
  const queue = new Int32Array(m); // at most m slots wait at once
  let head = 0;
  let waiting = 0;
  for (let s = 0; s < m; s++) if (start[s + 1]! > start[s]!) queue[waiting++] = s; // a slot nobody lists waits for fillRemaining
  const bidLimit = m * AUCTION_BIDS_PER_SLOT;
  for (let bids = 0; waiting > 0 && bids < bidLimit; bids++) {
    const s = queue[head]!;
    head = head + 1 === m ? 0 : head + 1;
    waiting--;
    let best = -1;
    let bestValue = -Infinity;
    let secondValue = -Infinity;
    for (let j = start[s]!, end = start[s + 1]!; j < end; j++) {
      const b = backend[j]!;
      const value = score[j]! - (count[b]! < capacity[b]! ? 0 : heapPrice[b * stride]!);
      if (value > bestValue) {
        secondValue = bestValue;
        bestValue = value;
        best = b;
      } else if (value > secondValue) {
        secondValue = value;
      }
    }
    if (secondValue === -Infinity) secondValue = bestValue - c.scoreSpan;
    const cap = capacity[best]!;
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
  fillRemaining(owner, count, c);
  return owner;
}
