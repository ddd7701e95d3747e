/**
 * Security identities: a label set -> a number that the datapath compares.
 *
 * Numbering follows Cilium: 1..5 reserved (host, world, unmanaged, health,
 * init); identities of endpoint label sets from 256 up to 65535 (Cilium's
 * cluster-wide 16-bit space); identities of CIDR prefixes in the local scope,
 * 1<<24 (16777216) and up: Cilium marks node-local identities with bit 24, so
 * a CIDR identity never collides with a cluster-wide one and is never
 * announced to other nodes.
 *
 * Identities are reference counted: each endpoint with a label set, and each
 * rule naming a prefix, holds one reference; at zero the identity is freed and
 * its number may be reused.
 */
import { InvalidInputError, MembraneError } from "../errors.js";
import { ReservedIdentity } from "../policy/types.js";
import { enclosingPrefixes, type Prefix } from "../packet/cidr.js";
import { LabelSet, type Label } from "./labels.js";

export type IdentityKind = "reserved" | "endpoint" | "cidr";

export interface Identity {
  id: number;
  labels: LabelSet;
  kind: IdentityKind;
  /** The prefix of a CIDR identity. */
  prefix?: Prefix;
}

export const MIN_ENDPOINT_IDENTITY = 256;
export const MAX_ENDPOINT_IDENTITY = 65535;
export const LOCAL_IDENTITY_SCOPE = 1 << 24;
export const MAX_LOCAL_IDENTITY = LOCAL_IDENTITY_SCOPE + 0xffffff;

export interface Allocation {
  identity: Identity;
  /** True when this call created the identity (its first reference). */
  created: boolean;
}

/**
 * What the policy engine needs from an allocator. The local one below answers
 * from memory; the kvstore issue adds a cluster-wide one with the same shape
 * (a local cache in front of the kvstore, as Cilium's allocator has), so the
 * engine stays synchronous and can validate a change fully before it applies.
 */
export interface IdentityAllocator {
  /** One more reference to the identity of `labels`; `preferred` keeps numbers stable across restarts when still free. */
  allocate(labels: LabelSet, preferred?: number): Allocation;
  /** One more reference to the CIDR identity of `prefix`. */
  allocateCidr(prefix: Prefix, preferred?: number): Allocation;
  /** Drops one reference; returns the identity if that was its last one (it is gone now). */
  release(id: number): Identity | undefined;
  get(id: number): Identity | undefined;
  byLabels(labels: LabelSet): Identity | undefined;
  /** Every identity in use, reserved ones included, by number. */
  list(): Identity[];
  references(id: number): number;
}

const RESERVED_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(ReservedIdentity).filter(([, id]) => id !== 0).map(([name, id]) => [id, name]),
);

function reservedLabels(name: string): LabelSet {
  return LabelSet.of([{ source: "reserved", key: name, value: "" }]);
}

/** Labels of a CIDR identity: every enclosing prefix (so a rule for 10.0.0.0/8 selects 10.1.0.0/16) and reserved:world. */
export function cidrLabels(prefix: Prefix): LabelSet {
  const labels: Label[] = enclosingPrefixes(prefix).map((p) => ({ source: "cidr", key: p, value: "" }));
  labels.push({ source: "reserved", key: "world", value: "" });
  return LabelSet.of(labels);
}

/** Numbers in [min, max], lowest free first, so that numbering is deterministic. */
class NumberPool {
  private next: number;
  private freed: number[] = [];
  private readonly used = new Set<number>();
  constructor(private readonly min: number, private readonly max: number, private readonly what: string) {
    this.next = min;
  }

  take(preferred?: number): number {
    if (preferred !== undefined && preferred >= this.min && preferred <= this.max && !this.used.has(preferred)) {
      this.used.add(preferred);
      this.freed = this.freed.filter((n) => n !== preferred);
      if (preferred >= this.next) {
        for (let n = this.next; n < preferred; n++) if (!this.used.has(n)) this.freed.push(n);
        this.freed.sort((a, b) => a - b);
        this.next = preferred + 1;
      }
      return preferred;
    }
    let n: number | undefined = this.freed.shift();
    while (n === undefined || this.used.has(n)) {
      if (this.next > this.max) throw new MembraneError("EXHAUSTED", `${this.what} identities exhausted (${this.min}..${this.max} in use)`);
      n = this.next++;
    }
    this.used.add(n);
    return n;
  }

  give(n: number): void {
    this.used.delete(n);
    const at = this.freed.findIndex((m) => m > n);
    if (at < 0) this.freed.push(n);
    else this.freed.splice(at, 0, n);
  }
}

export class LocalIdentityAllocator implements IdentityAllocator {
  private readonly byId = new Map<number, Identity>();
  private readonly byKey = new Map<string, Identity>();
  private readonly refs = new Map<number, number>();
  private readonly endpointPool: NumberPool;
  private readonly cidrPool: NumberPool;

  /**
   * `preferred`: numbers label sets had before (by LabelSet.id), taken again
   * when free, so a state file reloaded keeps its identities' numbers.
   * `limits`: how many endpoint / CIDR identities the spaces hold (all of
   * 256..65535 and of the local scope by default; smaller to test exhaustion).
   */
  constructor(private readonly preferred: ReadonlyMap<string, number> = new Map(), limits: { endpoint?: number; cidr?: number } = {}) {
    const top = (min: number, max: number, n: number | undefined) => (n === undefined ? max : Math.min(max, min + n - 1));
    this.endpointPool = new NumberPool(MIN_ENDPOINT_IDENTITY, top(MIN_ENDPOINT_IDENTITY, MAX_ENDPOINT_IDENTITY, limits.endpoint), "endpoint");
    this.cidrPool = new NumberPool(LOCAL_IDENTITY_SCOPE, top(LOCAL_IDENTITY_SCOPE, MAX_LOCAL_IDENTITY, limits.cidr), "CIDR");
    for (const [id, name] of Object.entries(RESERVED_NAMES)) this.insert({ id: Number(id), labels: reservedLabels(name), kind: "reserved" });
  }

  private insert(identity: Identity): void {
    this.byId.set(identity.id, identity);
    this.byKey.set(identity.labels.id, identity);
  }

  allocate(labels: LabelSet, preferred?: number): Allocation {
    if (labels.hasSource("reserved") || labels.hasSource("cidr")) {
      throw new InvalidInputError(`labels ${labels.id}: reserved: and cidr: labels are given by membrane, not by endpoints`);
    }
    return this.reference(labels, () => ({ id: this.endpointPool.take(preferred ?? this.preferred.get(labels.id)), labels, kind: "endpoint" }));
  }

  allocateCidr(prefix: Prefix, preferred?: number): Allocation {
    const labels = cidrLabels(prefix);
    return this.reference(labels, () => ({ id: this.cidrPool.take(preferred ?? this.preferred.get(labels.id)), labels, kind: "cidr", prefix }));
  }

  private reference(labels: LabelSet, make: () => Identity): Allocation {
    const existing = this.byKey.get(labels.id);
    if (existing) {
      if (existing.kind !== "reserved") this.refs.set(existing.id, (this.refs.get(existing.id) ?? 0) + 1);
      return { identity: existing, created: false };
    }
    const identity = make();
    this.insert(identity);
    this.refs.set(identity.id, 1);
    return { identity, created: true };
  }

  release(id: number): Identity | undefined {
    const identity = this.byId.get(id);
    if (!identity || identity.kind === "reserved") return undefined;
    const left = (this.refs.get(id) ?? 0) - 1;
    if (left > 0) {
      this.refs.set(id, left);
      return undefined;
    }
    this.refs.delete(id);
    this.byId.delete(id);
    this.byKey.delete(identity.labels.id);
    (identity.kind === "cidr" ? this.cidrPool : this.endpointPool).give(id);
    return identity;
  }

  get(id: number): Identity | undefined {
    return this.byId.get(id);
  }

  byLabels(labels: LabelSet): Identity | undefined {
    return this.byKey.get(labels.id);
  }

  list(): Identity[] {
    return [...this.byId.values()].sort((a, b) => a.id - b.id);
  }

  references(id: number): number {
    const identity = this.byId.get(id);
    if (!identity) return 0;
    return identity.kind === "reserved" ? Infinity : this.refs.get(id) ?? 0;
  }
}

export function reservedName(id: number): string | undefined {
  return RESERVED_NAMES[id];
}
