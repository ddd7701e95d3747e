/**
 * The policy engine's IdentityAllocator (host/identity/allocator.ts) backed
 * by cluster-wide identities: a local cache in front of the kvstore, as
 * Cilium's allocator has, so the engine stays synchronous and validates a
 * change fully before applying it.
 *
 * The asynchronous part happens first: `prepare(labelSets)` allocates the
 * cluster identities an upcoming change needs (one cluster reference each).
 * The engine's synchronous `allocate()` then answers from that cache, and
 * `release()` of the last local reference gives the cluster reference back in
 * the background (`settled()` waits for it). Reserved identities (1..255) and
 * CIDR identities (local scope, 1<<24 and up) never touch the kvstore: they
 * come from a LocalIdentityAllocator exactly as before.
 */
import { MembraneError } from "../errors.js";
import { LocalIdentityAllocator, type Allocation, type Identity, type IdentityAllocator } from "../identity/allocator.js";
import type { Prefix } from "../identity/cidr.js";
import type { LabelSet } from "../identity/labels.js";
import type { ClusterIdentityAllocator } from "./identities.js";

interface Entry {
  identity: Identity;
  /** References held by the engine; 0 = prepared, not yet used. */
  refs: number;
}

export class KvstoreIdentityAllocator implements IdentityAllocator {
  private readonly local = new LocalIdentityAllocator();
  private readonly byKey = new Map<string, Entry>();
  private readonly byId = new Map<number, Entry>();
  private readonly pending = new Set<Promise<unknown>>();

  /** `onError`: a background release that failed (the node key then expires with the node's lease). */
  constructor(private readonly cluster: ClusterIdentityAllocator, private readonly onError: (err: unknown) => void = () => {}) {}

  /** Allocates, on the kvstore, the identities of label sets not yet in the cache. */
  async prepare(labelSets: Iterable<LabelSet>): Promise<void> {
    const wanted = new Map<string, LabelSet>();
    for (const l of labelSets) if (!this.byKey.has(l.id) && !l.hasSource("reserved") && !l.hasSource("cidr")) wanted.set(l.id, l);
    await Promise.all(
      [...wanted.values()].map(async (labels) => {
        const { id } = await this.cluster.allocate(labels);
        if (this.byKey.has(labels.id)) {
          await this.cluster.release(labels); // prepared twice concurrently: keep one cluster reference
          return;
        }
        const entry: Entry = { identity: { id, labels, kind: "endpoint" }, refs: 0 };
        this.byKey.set(labels.id, entry);
        this.byId.set(id, entry);
      }),
    );
  }

  allocate(labels: LabelSet, _preferred?: number): Allocation {
    if (labels.hasSource("reserved") || labels.hasSource("cidr")) return this.local.allocate(labels); // refuses, as before
    const entry = this.byKey.get(labels.id);
    if (!entry) {
      throw new MembraneError("IDENTITY_NOT_PREPARED", `labels ${labels.id}: no cluster identity yet (prepare() the label sets a change needs before applying it)`);
    }
    entry.refs++;
    return { identity: entry.identity, created: entry.refs === 1 };
  }

  allocateCidr(prefix: Prefix, preferred?: number): Allocation {
    return this.local.allocateCidr(prefix, preferred);
  }

  release(id: number): Identity | undefined {
    const entry = this.byId.get(id);
    if (!entry) return this.local.release(id);
    if (entry.refs === 0) return undefined;
    if (--entry.refs > 0) return undefined;
    this.drop(entry);
    return entry.identity;
  }

  /** Gives back cluster references prepared but never used (a change that was rejected). */
  releaseUnused(): void {
    for (const entry of [...this.byKey.values()]) if (entry.refs === 0) this.drop(entry);
  }

  private drop(entry: Entry): void {
    this.byKey.delete(entry.identity.labels.id);
    this.byId.delete(entry.identity.id);
    const p = this.cluster.release(entry.identity.labels).catch(this.onError);
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }

  /** Waits for background releases. */
  async settled(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }

  get(id: number): Identity | undefined {
    const entry = this.byId.get(id);
    return entry && entry.refs > 0 ? entry.identity : this.local.get(id);
  }

  byLabels(labels: LabelSet): Identity | undefined {
    const entry = this.byKey.get(labels.id);
    return entry && entry.refs > 0 ? entry.identity : this.local.byLabels(labels);
  }

  list(): Identity[] {
    const cluster = [...this.byId.values()].filter((e) => e.refs > 0).map((e) => e.identity);
    return [...this.local.list(), ...cluster].sort((a, b) => a.id - b.id);
  }

  references(id: number): number {
    return this.byId.get(id)?.refs ?? this.local.references(id);
  }
}
