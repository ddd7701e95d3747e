/**
 * The identities the policy engine sees on a node of a cluster: this node's
 * own (allocated for its pods, referenced by its endpoints, plus reserved and
 * CIDR identities) AND every cluster identity the kvstore holds (other
 * nodes' pods). A rule "from app=front" must admit the identity of a
 * frontend pod running elsewhere, so the engine's peer selections are
 * computed over both.
 *
 * The engine learns that an identity appeared or went through its own
 * allocate/release (created/released) and through
 * externalIdentitiesChanged(). An identity known from both sides must appear
 * once and go once: a local endpoint releasing the last local reference to
 * an identity other nodes still use does not "release" it for the engine,
 * and a master key vanishing while a local endpoint holds the identity
 * changes nothing.
 */
import type { Allocation, Identity, IdentityAllocator } from "../identity/allocator.js";
import type { Prefix } from "../packet/cidr.js";
import type { LabelSet } from "../identity/labels.js";

export class ClusterIdentityView implements IdentityAllocator {
  /** Cluster identities from the kvstore's master keys, by ID. */
  private readonly remote = new Map<number, Identity>();

  constructor(readonly local: IdentityAllocator) {}

  allocate(labels: LabelSet, preferred?: number): Allocation {
    const a = this.local.allocate(labels, preferred);
    return a.created && this.remote.has(a.identity.id) ? { identity: a.identity, created: false } : a;
  }

  allocateCidr(prefix: Prefix, preferred?: number): Allocation {
    return this.local.allocateCidr(prefix, preferred);
  }

  release(id: number): Identity | undefined {
    const gone = this.local.release(id);
    return gone && this.remote.has(id) ? undefined : gone;
  }

  get(id: number): Identity | undefined {
    return this.local.get(id) ?? this.remote.get(id);
  }

  byLabels(labels: LabelSet): Identity | undefined {
    const own = this.local.byLabels(labels);
    if (own) return own;
    for (const i of this.remote.values()) if (i.labels.id === labels.id) return i;
    return undefined;
  }

  list(): Identity[] {
    const all = new Map<number, Identity>();
    for (const i of this.remote.values()) all.set(i.id, i);
    for (const i of this.local.list()) all.set(i.id, i);
    return [...all.values()].sort((a, b) => a.id - b.id);
  }

  references(id: number): number {
    return this.local.references(id);
  }

  /** A master key appeared (or changed): the identity the engine should now learn about, if it is new to it. */
  remoteUpsert(identity: Identity): { created: Identity[]; released: Identity[] } {
    const prev = this.remote.get(identity.id);
    this.remote.set(identity.id, identity);
    const localHas = this.local.get(identity.id) !== undefined;
    if (prev && prev.labels.id === identity.labels.id) return { created: [], released: [] };
    if (localHas) return { created: [], released: [] };
    return { created: [identity], released: prev ? [prev] : [] };
  }

  /** A master key vanished: the identity the engine should forget, unless a local endpoint still holds it. */
  remoteDelete(id: number): { created: Identity[]; released: Identity[] } {
    const prev = this.remote.get(id);
    if (!prev) return { created: [], released: [] };
    this.remote.delete(id);
    if (this.local.get(id) !== undefined) return { created: [], released: [] };
    return { created: [], released: [prev] };
  }

  get remoteCount(): number {
    return this.remote.size;
  }
}
