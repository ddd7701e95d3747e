/**
 * A reference model of the Wasm core's conntrack and fragment tracking, for
 * the packet-sequence fuzz tests (test/wasm/fuzz-sequence.test.ts,
 * fuzz-table-full.test.ts): fed the same packets as the core, it predicts
 * each verdict and the tables after it.
 *
 * It follows the semantics documented in assembly/conntrack.ts and
 * assembly/frag.ts (lookup order, tuple flags, timeouts, TCP closing,
 * eviction or drop when full, ICMP errors related to the quoted flow) and
 * knows nothing of parsing: callers describe each packet (ModelPkt). Which
 * entry a full table gives up is the table's business (an approximation of
 * LRU): the model accepts any allowed victim and learns which one it was from
 * the state after the packet (settle).
 */
import type { Datapath } from "../../host/datapath.js";
import type { CtOutcome } from "../../host/verdict.js";
import type { Direction } from "../../host/wasm/batch.js";

/** Table keys hold addresses and fragment ids as hex. */
const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

export interface ModelConfig {
  tcpEntries: number;
  otherEntries: number;
  timeouts: { tcp: number; syn: number; close: number; other: number };
  whenFull: "evict-lru" | "drop";
  fragEntries: number;
  fragTimeout: number;
}

/** What the model needs to know of a packet. Addresses as raw bytes. */
export interface ModelPkt {
  family: 4 | 6;
  src: Uint8Array;
  dst: Uint8Array;
  proto: number;
  /** Ports as the core derives them (echo: request 0/id, reply id/0); unused for later fragments. */
  sport: number;
  dport: number;
  tcpFlags: number;
  /** IP datagram length (what conntrack counts in bytes). */
  l3len: number;
  frag: "none" | "first" | "later";
  /** Raw identification bytes (2 for IPv4, 4 for IPv6) as hex. */
  fragId: string;
  /** For ICMP errors: the tuple of the quoted packet. */
  quoted?: { src: Uint8Array; dst: Uint8Array; proto: number; sport: number; dport: number };
}

export interface CtVal {
  lifetime: number;
  flags: number;
  txPackets: number;
  rxPackets: number;
  txBytes: number;
  rxBytes: number;
  txFlagsSeen: number;
  rxFlagsSeen: number;
  created: number;
}

export interface FragVal { sport: number; dport: number; lifetime: number }

export type CtName = "tcp4" | "any4" | "tcp6" | "any6";
export const CT_NAMES: readonly CtName[] = ["tcp4", "any4", "tcp6", "any6"];

export interface Snapshot {
  ct: Record<CtName, Map<string, CtVal>>;
  frag: Record<4 | 6, Map<string, FragVal>>;
}

const OUT = 0;
const IN = 1;
const flagOf = (d: "egress" | "ingress") => (d === "ingress" ? IN : OUT);

function ctKey(src: Uint8Array, dst: Uint8Array, sport: number, dport: number, proto: number, flag: number): string {
  return `${hex(src)}|${hex(dst)}|${sport}|${dport}|${proto}|${flag}`;
}

function u16be(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}

/** The state of the datapath's tables, read through the public API. */
export function snapshot(dp: Datapath): Snapshot {
  const ct = { tcp4: new Map(), any4: new Map(), tcp6: new Map(), any6: new Map() } as Snapshot["ct"];
  for (const r of dp.conntrack()) {
    const k = r.key;
    const a = r.table.endsWith("6") ? 16 : 4;
    const key = ctKey(k.slice(0, a), k.slice(a, 2 * a), u16be(k, 2 * a), u16be(k, 2 * a + 2), k[2 * a + 4]!, k[2 * a + 5]!);
    const e = r.entry;
    ct[r.table].set(key, {
      lifetime: e.lifetime, flags: e.flags, txPackets: Number(e.txPackets), rxPackets: Number(e.rxPackets),
      txBytes: Number(e.txBytes), rxBytes: Number(e.rxBytes), txFlagsSeen: e.txFlagsSeen, rxFlagsSeen: e.rxFlagsSeen, created: e.created,
    });
  }
  const frag = { 4: new Map(), 6: new Map() } as Snapshot["frag"];
  for (const fam of [4, 6] as const) {
    const a = fam === 4 ? 4 : 16;
    const idLen = fam === 4 ? 2 : 4;
    const keySize = fam === 4 ? 12 : 40;
    for (const rec of dp.dumpTable(fam === 4 ? "frag4" : "frag6")) {
      const key = `${hex(rec.slice(0, a))}|${hex(rec.slice(a, 2 * a))}|${hex(rec.slice(2 * a, 2 * a + idLen))}|${rec[2 * a + idLen]}`;
      const v = rec.subarray(keySize);
      frag[fam].set(key, { sport: u16be(v, 0), dport: u16be(v, 2), lifetime: new DataView(v.buffer, v.byteOffset + 4, 4).getUint32(0, true) });
    }
  }
  return { ct, frag };
}

export interface ModelVerdict {
  verdict: "pass" | "drop";
  dropReason?: string;
  ct: CtOutcome;
  direction: "egress" | "ingress";
  ctTable?: CtName;
}

/** A prediction; `alt` is the other allowed outcome when a full table may drop instead of evicting. */
export type Prediction = ModelVerdict & { alt?: ModelVerdict };

/** A replacement in a full table, to be resolved from the state after the packet. */
interface PendingEviction {
  map: "ct" | "frag";
  table: CtName | 4 | 6;
  newKey: string;
  /** Keys the table may give up. */
  candidates: Set<string>;
  /** The drop policy may refuse the flow instead (when its victim is live). */
  mayDrop: boolean;
}

/** A SYN on a closing entry starts a new connection on the reused 5-tuple (assembly/conntrack.ts startsOver). */
export function startsOver(v: CtVal, p: Pick<ModelPkt, "proto" | "tcpFlags">): boolean {
  return p.proto === 6 && (p.tcpFlags & 0x02) !== 0 && (v.flags & 3) !== 0;
}

export class CtModel {
  state: Snapshot = emptySnapshot();
  private pending: PendingEviction[] = [];
  /** The closing reply-direction entry the last decide()'s new flow retires once it is created. */
  private retiring: { table: CtName; key: string } | undefined;

  constructor(readonly cfg: ModelConfig) {}

  /** Replaces the state (after a packet the model cannot describe). */
  resync(s: Snapshot): void {
    this.state = s;
  }

  flush(): void {
    this.state = emptySnapshot();
  }

  gc(now: number): void {
    for (const m of [...Object.values(this.state.ct), ...Object.values(this.state.frag)]) {
      for (const [k, v] of m) if (v.lifetime < now) m.delete(k);
    }
  }

  private capacity(t: CtName): number {
    return t.startsWith("tcp") ? this.cfg.tcpEntries : this.cfg.otherEntries;
  }

  private tableFor(family: 4 | 6, proto: number): CtName {
    return `${proto === 6 ? "tcp" : "any"}${family}` as CtName;
  }

  private live(t: CtName, key: string, now: number): CtVal | undefined {
    const v = this.state.ct[t].get(key);
    return v && v.lifetime >= now ? v : undefined;
  }

  private refresh(v: CtVal, proto: number, now: number): void {
    const t = this.cfg.timeouts;
    if (proto === 6) v.lifetime = now + ((v.flags & 3) === 3 ? t.close : v.flags & 4 ? t.tcp : t.syn);
    else v.lifetime = now + t.other;
  }

  private track(v: CtVal, p: ModelPkt, reply: boolean, now: number): void {
    if (reply) { v.rxPackets++; v.rxBytes += p.l3len; v.rxFlagsSeen |= p.tcpFlags; }
    else { v.txPackets++; v.txBytes += p.l3len; v.txFlagsSeen |= p.tcpFlags; }
    if (p.proto === 6) {
      let f = v.flags;
      if (p.tcpFlags & 0x02 && f & 3) f &= ~7;
      if (p.tcpFlags & 0x04) f |= 3;
      else if (p.tcpFlags & 0x01) f |= reply ? 2 : 1;
      if (!(p.tcpFlags & 0x02)) f |= 4;
      v.flags = f;
    }
    this.refresh(v, p.proto, now);
  }

  /**
   * Resolves the replacements of the last decide() from the state after it:
   * exactly one allowed entry must be gone (or, under the drop policy, the new
   * flow refused). Returns problems; the model then matches the core again.
   */
  settle(got: ModelVerdict, post: Snapshot): string[] {
    const problems: string[] = [];
    for (const p of this.pending) {
      const m: Map<string, unknown> = p.map === "ct" ? this.state.ct[p.table as CtName] : this.state.frag[p.table as 4 | 6];
      const after: Map<string, unknown> = p.map === "ct" ? post.ct[p.table as CtName] : post.frag[p.table as 4 | 6];
      if (p.map === "ct" && p.mayDrop && got.dropReason === "DROP_CT_CREATE_FAILED") {
        m.delete(p.newKey);
        continue;
      }
      const retiring = p.map === "ct" ? this.retiring?.key : undefined;
      const gone = [...m.keys()].filter((k) => k !== p.newKey && k !== retiring && !after.has(k));
      // The victim may be the very entry the new flow retires: then nothing else is gone.
      if (gone.length === 0 && retiring !== undefined && p.candidates.has(retiring) && !after.has(retiring)) continue;
      if (gone.length !== 1 || !p.candidates.has(gone[0]!)) {
        problems.push(`full ${p.map} table ${p.table}: gave up ${JSON.stringify(gone)}; allowed: exactly one of ${JSON.stringify([...p.candidates])}`);
        continue;
      }
      m.delete(gone[0]!);
    }
    this.pending = [];
    if (this.retiring && got.dropReason !== "DROP_CT_CREATE_FAILED") this.state.ct[this.retiring.table].delete(this.retiring.key);
    this.retiring = undefined;
    return problems;
  }

  decide(p: ModelPkt, dirIn: Direction, now: number): Prediction {
    this.pending = [];
    this.retiring = undefined;
    const fallback = dirIn === "auto" ? "egress" : dirIn;
    let sport = p.sport;
    let dport = p.dport;
    if (p.frag !== "none" && !p.quoted) {
      const fm = this.state.frag[p.family];
      const fk = `${hex(p.src)}|${hex(p.dst)}|${p.fragId}|${p.proto}`;
      const e = fm.get(fk);
      if (p.frag === "later") {
        if (!e || e.lifetime < now) return { verdict: "drop", dropReason: "DROP_FRAG_NOSUPPORT", ct: "none", direction: fallback };
        sport = e.sport;
        dport = e.dport;
      } else if (e) {
        Object.assign(e, { sport, dport, lifetime: now + this.cfg.fragTimeout });
      } else {
        if (fm.size >= this.cfg.fragEntries) {
          // fragment tables always give up some datagram, live or not
          this.pending.push({ map: "frag", table: p.family, newKey: fk, candidates: new Set(fm.keys()), mayDrop: false });
        }
        fm.set(fk, { sport, dport, lifetime: now + this.cfg.fragTimeout });
      }
    }
    if (p.quoted) {
      const q = p.quoted;
      const t = this.tableFor(p.family, q.proto);
      const fwd = (f: number) => ctKey(q.src, q.dst, q.sport, q.dport, q.proto, f);
      const rev = (f: number) => ctKey(q.dst, q.src, q.dport, q.sport, q.proto, f);
      let dir: "egress" | "ingress" | undefined;
      if (dirIn === "auto") {
        if (this.live(t, fwd(OUT), now)) dir = "ingress";
        else if (this.live(t, rev(OUT), now)) dir = "egress";
        else if (this.live(t, fwd(IN), now)) dir = "egress";
        else if (this.live(t, rev(IN), now)) dir = "ingress";
      } else if (this.live(t, fwd(flagOf(dirIn) ^ 1), now) || this.live(t, rev(flagOf(dirIn)), now)) {
        dir = dirIn;
      }
      if (!dir) return { verdict: "drop", dropReason: "DROP_ICMP_NO_FLOW", ct: "none", direction: fallback };
      return { verdict: "pass", ct: "related", direction: dir, ctTable: t };
    }
    const t = this.tableFor(p.family, p.proto);
    const fwd = (f: number) => ctKey(p.src, p.dst, sport, dport, p.proto, f);
    const rev = (f: number) => ctKey(p.dst, p.src, dport, sport, p.proto, f);
    let dir: "egress" | "ingress";
    let replyKey: string | undefined;
    if (dirIn === "auto") {
      if (this.live(t, rev(OUT), now)) { dir = "ingress"; replyKey = rev(OUT); }
      else { dir = "egress"; if (this.live(t, rev(IN), now)) replyKey = rev(IN); }
    } else {
      dir = dirIn;
      if (this.live(t, rev(flagOf(dir) ^ 1), now)) replyKey = rev(flagOf(dir) ^ 1);
    }
    if (replyKey && startsOver(this.state.ct[t].get(replyKey)!, p)) {
      // A SYN answering a closed connection opens a new one the other way round.
      this.retiring = { table: t, key: replyKey };
      replyKey = undefined;
      if (dirIn === "auto") dir = "egress";
    }
    if (replyKey) {
      this.track(this.state.ct[t].get(replyKey)!, p, true, now);
      return { verdict: "pass", ct: "reply", direction: dir, ctTable: t };
    }
    const k = fwd(flagOf(dir));
    if (this.live(t, k, now) && !startsOver(this.state.ct[t].get(k)!, p)) {
      this.retiring = undefined; // the packet continues a flow: nothing is replaced
      this.track(this.state.ct[t].get(k)!, p, false, now);
      return { verdict: "pass", ct: "established", direction: dir, ctTable: t };
    }
    const m = this.state.ct[t];
    const refused: ModelVerdict = { verdict: "drop", dropReason: "DROP_CT_CREATE_FAILED", ct: "new", direction: dir, ctTable: t };
    let alt: ModelVerdict | undefined;
    if (m.has(k)) {
      m.delete(k); // an entry under the same key (expired, or closing and started over) is replaced
    } else if (m.size >= this.capacity(t)) {
      const expired = [...m].filter(([, e]) => e.lifetime < now).map(([key]) => key);
      if (this.cfg.whenFull === "drop") {
        // a table full of live entries refuses new flows; otherwise it may reclaim an expired entry
        if (expired.length === 0) return refused;
        alt = refused;
      }
      this.pending.push({ map: "ct", table: t, newKey: k, candidates: new Set(this.cfg.whenFull === "drop" ? expired : m.keys()), mayDrop: alt !== undefined });
    }
    const v: CtVal = { lifetime: 0, flags: 0, txPackets: 0, rxPackets: 0, txBytes: 0, rxBytes: 0, txFlagsSeen: 0, rxFlagsSeen: 0, created: now };
    m.set(k, v);
    this.track(v, { ...p, sport, dport }, false, now);
    return { verdict: "pass", ct: "new", direction: dir, ctTable: t, ...(alt ? { alt } : {}) };
  }
}

function emptySnapshot(): Snapshot {
  return { ct: { tcp4: new Map(), any4: new Map(), tcp6: new Map(), any6: new Map() }, frag: { 4: new Map(), 6: new Map() } };
}

/** Differences between two states, as lines; empty when equal. */
export function diffStates(want: Snapshot, got: Snapshot): string[] {
  const out: string[] = [];
  const cmp = (name: string, a: Map<string, object>, b: Map<string, object>) => {
    for (const [k, v] of a) {
      const g = b.get(k);
      if (!g) out.push(`${name} ${k}: missing (model ${JSON.stringify(v)})`);
      else if (JSON.stringify(g) !== JSON.stringify(v)) out.push(`${name} ${k}: core ${JSON.stringify(g)}, model ${JSON.stringify(v)}`);
    }
    for (const [k, g] of b) if (!a.has(k)) out.push(`${name} ${k}: unexpected (core ${JSON.stringify(g)})`);
  };
  for (const t of CT_NAMES) cmp(t, want.ct[t], got.ct[t]);
  cmp("frag4", want.frag[4], got.frag[4]);
  cmp("frag6", want.frag[6], got.frag[6]);
  return out;
}
