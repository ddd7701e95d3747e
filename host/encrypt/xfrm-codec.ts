/**
 * XFRM netlink messages (linux/xfrm.h), encoded and decoded by hand: the
 * payloads of NEWSA/UPDSA, DELSA, GETSA, NEWPOLICY/UPDPOLICY, DELPOLICY and
 * GETPOLICY with the AEAD, mark, template, source-address and UDP-encap
 * attributes. Pure: bytes in, bytes out. The layouts are pinned by a test
 * that compiles offsetof() against the kernel's header, and the messages are
 * compared byte for byte with what iproute2's `ip xfrm` sends for the same
 * state and policy.
 *
 * Integers are host order (little-endian on every machine membrane runs on)
 * except SPIs and ports, which are network order, as in the kernel structs.
 */
import { formatIp, parseIp, type IpFamily } from "../packet/address.js";

export const XFRM_MSG = {
  NEWSA: 0x10,
  DELSA: 0x11,
  GETSA: 0x12,
  NEWPOLICY: 0x13,
  DELPOLICY: 0x14,
  GETPOLICY: 0x15,
  UPDPOLICY: 0x19,
  UPDSA: 0x1a,
  FLUSHSA: 0x1c,
  FLUSHPOLICY: 0x1d,
} as const;

export const XFRMA = { ENCAP: 4, TMPL: 5, SRCADDR: 13, ALG_AEAD: 18, MARK: 21 } as const;

export const XFRM_POLICY_DIR = { in: 0, out: 1, fwd: 2 } as const;
export type PolicyDirection = keyof typeof XFRM_POLICY_DIR;
export const XFRM_MODE = { transport: 0, tunnel: 1 } as const;
export type XfrmMode = keyof typeof XFRM_MODE;

const AF_INET = 2;
const AF_INET6 = 10;
const IPPROTO_ESP = 50;
/** RFC 3948 ESP-in-UDP encapsulation type (linux/udp.h UDP_ENCAP_ESPINUDP). */
export const UDP_ENCAP_ESPINUDP = 2;

const SELECTOR_SIZE = 56;
const USERSA_INFO_SIZE = 224;
const USERSA_ID_SIZE = 24;
const USERPOLICY_INFO_SIZE = 168;
const USERPOLICY_ID_SIZE = 64;
const USER_TMPL_SIZE = 64;
const LIFETIME_CFG_SIZE = 64;
const ALGO_NAME = 64;

export interface Mark {
  value: number;
  mask: number;
}

export interface Selector {
  /** "10.1.0.0/16"; family of both must match. */
  src: string;
  dst: string;
  /** IP protocol, 0 = any. */
  proto?: number;
}

export interface SaSpec {
  src: string;
  dst: string;
  spi: number;
  reqid: number;
  mode: XfrmMode;
  aead: { name: string; key: Uint8Array; icvBits: number };
  mark?: Mark;
  /** Default: any to any in the outer family. */
  selector?: Selector;
  replayWindow?: number;
  /** UDP encapsulation (RFC 3948). */
  encap?: { sport: number; dport: number };
}

export interface SaId {
  dst: string;
  spi: number;
  /** Needed to tell states apart by source (XFRMA_SRCADDR). */
  src?: string;
  mark?: Mark;
}

export interface PolicySpec {
  selector: Selector;
  dir: PolicyDirection;
  priority?: number;
  mark?: Mark;
  /** Templates: the SA(s) packets matching the policy must go through. */
  templates: { src: string; dst: string; reqid: number; mode: XfrmMode; spi?: number }[];
}

export interface PolicyId {
  selector: Selector;
  dir: PolicyDirection;
  mark?: Mark;
}

// ------------------------------------------------------------------ helpers

function familyOf(addr: string): { family: IpFamily; af: number; bytes: Uint8Array } {
  const { family, bytes } = parseIp(addr);
  return { family, af: family === 4 ? AF_INET : AF_INET6, bytes };
}

function writeAddress(view: DataView, off: number, bytes: Uint8Array): void {
  for (let i = 0; i < 16; i++) view.setUint8(off + i, i < bytes.length ? bytes[i]! : 0);
}

function readAddress(view: DataView, off: number, af: number): string {
  const n = af === AF_INET ? 4 : 16;
  const bytes = new Uint8Array(n);
  for (let i = 0; i < n; i++) bytes[i] = view.getUint8(off + i);
  return formatIp(bytes);
}

function parsePrefix(text: string): { af: number; bytes: Uint8Array; length: number } {
  const [addr, len] = text.split("/");
  const { af, bytes, family } = familyOf(addr!);
  const length = len === undefined ? (family === 4 ? 32 : 128) : Number(len);
  return { af, bytes, length };
}

function writeSelector(view: DataView, off: number, sel: Selector): void {
  const src = parsePrefix(sel.src);
  const dst = parsePrefix(sel.dst);
  if (src.af !== dst.af) throw new RangeError(`xfrm selector ${sel.src} -> ${sel.dst}: families differ`);
  writeAddress(view, off, dst.bytes);
  writeAddress(view, off + 16, src.bytes);
  view.setUint16(off + 40, dst.af, true);
  view.setUint8(off + 42, dst.length);
  view.setUint8(off + 43, src.length);
  view.setUint8(off + 44, sel.proto ?? 0);
}

function readSelector(view: DataView, off: number): Selector {
  const af = view.getUint16(off + 40, true);
  const dst = `${readAddress(view, off, af)}/${view.getUint8(off + 42)}`;
  const src = `${readAddress(view, off + 16, af)}/${view.getUint8(off + 43)}`;
  const proto = view.getUint8(off + 44);
  return proto ? { src, dst, proto } : { src, dst };
}

/**
 * No limits: XFRM_INF in the four byte and packet limits; the four time
 * limits stay 0, which means "never" for them (as iproute2 sends it).
 */
function writeUnlimitedLifetime(view: DataView, off: number): void {
  for (let i = 0; i < LIFETIME_CFG_SIZE / 2; i++) view.setUint8(off + i, 0xff);
}

/** One netlink attribute: length (header included, unpadded), type, payload, padded to 4. */
function attr(type: number, payload: Uint8Array): Uint8Array {
  const len = 4 + payload.length;
  const out = new Uint8Array((len + 3) & ~3);
  const view = new DataView(out.buffer);
  view.setUint16(0, len, true);
  view.setUint16(2, type, true);
  out.set(payload, 4);
  return out;
}

function markAttr(mark: Mark): Uint8Array {
  const p = new Uint8Array(8);
  const v = new DataView(p.buffer);
  v.setUint32(0, mark.value >>> 0, true);
  v.setUint32(4, mark.mask >>> 0, true);
  return attr(XFRMA.MARK, p);
}

function concat(parts: Uint8Array<ArrayBufferLike>[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

// ------------------------------------------------------------------ states

/** NEWSA / UPDSA payload. */
export function encodeSa(sa: SaSpec): Uint8Array {
  const src = familyOf(sa.src);
  const dst = familyOf(sa.dst);
  if (src.af !== dst.af) throw new RangeError(`xfrm state ${sa.src} -> ${sa.dst}: families differ`);
  const info = new Uint8Array(USERSA_INFO_SIZE);
  const v = new DataView(info.buffer);
  const any = src.family === 4 ? "0.0.0.0/0" : "::/0";
  writeSelector(v, 0, sa.selector ?? { src: any, dst: any });
  writeAddress(v, 56, dst.bytes);
  v.setUint32(72, sa.spi >>> 0, false);
  v.setUint8(76, IPPROTO_ESP);
  writeAddress(v, 80, src.bytes);
  writeUnlimitedLifetime(v, 96);
  v.setUint32(208, sa.reqid >>> 0, true);
  v.setUint16(212, src.af, true);
  v.setUint8(214, XFRM_MODE[sa.mode]);
  v.setUint8(215, sa.replayWindow ?? 0);
  const aead = new Uint8Array(ALGO_NAME + 8 + sa.aead.key.length);
  const av = new DataView(aead.buffer);
  aead.set(new TextEncoder().encode(sa.aead.name).subarray(0, ALGO_NAME - 1), 0);
  av.setUint32(ALGO_NAME, sa.aead.key.length * 8, true);
  av.setUint32(ALGO_NAME + 4, sa.aead.icvBits, true);
  aead.set(sa.aead.key, ALGO_NAME + 8);
  const parts: Uint8Array[] = [info, attr(XFRMA.ALG_AEAD, aead)];
  if (sa.encap) {
    const e = new Uint8Array(24);
    const ev = new DataView(e.buffer);
    ev.setUint16(0, UDP_ENCAP_ESPINUDP, true);
    ev.setUint16(2, sa.encap.sport, false);
    ev.setUint16(4, sa.encap.dport, false);
    parts.push(attr(XFRMA.ENCAP, e));
  }
  if (sa.mark) parts.push(markAttr(sa.mark));
  return concat(parts);
}

/** DELSA / GETSA payload: xfrm_usersa_id, then the source address and mark that pick one state. */
export function encodeSaId(id: SaId): Uint8Array {
  const dst = familyOf(id.dst);
  const body = new Uint8Array(USERSA_ID_SIZE);
  const v = new DataView(body.buffer);
  writeAddress(v, 0, dst.bytes);
  v.setUint32(16, id.spi >>> 0, false);
  v.setUint16(20, dst.af, true);
  v.setUint8(22, IPPROTO_ESP);
  const parts: Uint8Array[] = [body];
  if (id.src) parts.push(attr(XFRMA.SRCADDR, (() => { const a = new Uint8Array(16); a.set(familyOf(id.src).bytes); return a; })()));
  if (id.mark) parts.push(markAttr(id.mark));
  return concat(parts);
}

export interface DecodedSa {
  src: string;
  dst: string;
  spi: number;
  reqid: number;
  mode: XfrmMode;
  selector: Selector;
  /** Algorithm name and ICV; the key is never decoded into the result. */
  aead?: { name: string; keyBits: number; icvBits: number };
  mark?: Mark;
}

/** A NEWSA message payload as the kernel sends it in a GETSA dump. */
export function decodeSa(payload: Uint8Array): DecodedSa {
  const v = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const af = v.getUint16(212, true);
  const out: DecodedSa = {
    src: readAddress(v, 80, af),
    dst: readAddress(v, 56, af),
    spi: v.getUint32(72, false),
    reqid: v.getUint32(208, true),
    mode: v.getUint8(214) === 1 ? "tunnel" : "transport",
    selector: readSelector(v, 0),
  };
  for (const a of attributes(payload, USERSA_INFO_SIZE)) {
    const av = new DataView(a.payload.buffer, a.payload.byteOffset, a.payload.byteLength);
    if (a.type === XFRMA.ALG_AEAD) {
      const name = new TextDecoder().decode(a.payload.subarray(0, ALGO_NAME)).replace(/\0.*$/s, "");
      out.aead = { name, keyBits: av.getUint32(ALGO_NAME, true), icvBits: av.getUint32(ALGO_NAME + 4, true) };
    } else if (a.type === XFRMA.MARK) {
      out.mark = { value: av.getUint32(0, true), mask: av.getUint32(4, true) };
    }
  }
  return out;
}

// ------------------------------------------------------------------ policies

/** NEWPOLICY / UPDPOLICY payload. */
export function encodePolicy(p: PolicySpec): Uint8Array {
  const info = new Uint8Array(USERPOLICY_INFO_SIZE);
  const v = new DataView(info.buffer);
  writeSelector(v, 0, p.selector);
  writeUnlimitedLifetime(v, 56);
  v.setUint32(152, p.priority ?? 0, true);
  v.setUint8(160, XFRM_POLICY_DIR[p.dir]);
  const tmpls = new Uint8Array(USER_TMPL_SIZE * p.templates.length);
  const tv = new DataView(tmpls.buffer);
  p.templates.forEach((t, i) => {
    const o = i * USER_TMPL_SIZE;
    const dst = familyOf(t.dst);
    const src = familyOf(t.src);
    writeAddress(tv, o, dst.bytes);
    tv.setUint32(o + 16, (t.spi ?? 0) >>> 0, false);
    tv.setUint8(o + 20, IPPROTO_ESP);
    tv.setUint16(o + 24, src.af, true);
    writeAddress(tv, o + 28, src.bytes);
    tv.setUint32(o + 44, t.reqid >>> 0, true);
    tv.setUint8(o + 48, XFRM_MODE[t.mode]);
    // Any authentication, encryption and compression algorithm: the SA decides.
    tv.setUint32(o + 52, 0xffffffff, true);
    tv.setUint32(o + 56, 0xffffffff, true);
    tv.setUint32(o + 60, 0xffffffff, true);
  });
  const parts = [info, attr(XFRMA.TMPL, tmpls)];
  if (p.mark) parts.push(markAttr(p.mark));
  return concat(parts);
}

/** DELPOLICY / GETPOLICY payload: xfrm_userpolicy_id (by selector and direction) and the mark. */
export function encodePolicyId(id: PolicyId): Uint8Array {
  const body = new Uint8Array(USERPOLICY_ID_SIZE);
  const v = new DataView(body.buffer);
  writeSelector(v, 0, id.selector);
  v.setUint8(60, XFRM_POLICY_DIR[id.dir]);
  return id.mark ? concat([body, markAttr(id.mark)]) : body;
}

export interface DecodedPolicy {
  selector: Selector;
  dir: PolicyDirection;
  priority: number;
  mark?: Mark;
  templates: { src: string; dst: string; reqid: number; mode: XfrmMode; spi: number }[];
}

/** A NEWPOLICY payload as the kernel sends it in a GETPOLICY dump. */
export function decodePolicy(payload: Uint8Array): DecodedPolicy {
  const v = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const dirValue = v.getUint8(160);
  const dir = (Object.keys(XFRM_POLICY_DIR) as PolicyDirection[]).find((d) => XFRM_POLICY_DIR[d] === dirValue) ?? "in";
  const out: DecodedPolicy = { selector: readSelector(v, 0), dir, priority: v.getUint32(152, true), templates: [] };
  for (const a of attributes(payload, USERPOLICY_INFO_SIZE)) {
    const av = new DataView(a.payload.buffer, a.payload.byteOffset, a.payload.byteLength);
    if (a.type === XFRMA.MARK) out.mark = { value: av.getUint32(0, true), mask: av.getUint32(4, true) };
    if (a.type === XFRMA.TMPL) {
      for (let o = 0; o + USER_TMPL_SIZE <= a.payload.length; o += USER_TMPL_SIZE) {
        const af = av.getUint16(o + 24, true);
        out.templates.push({
          dst: readAddress(av, o, af),
          spi: av.getUint32(o + 16, false),
          src: readAddress(av, o + 28, af),
          reqid: av.getUint32(o + 44, true),
          mode: av.getUint8(o + 48) === 1 ? "tunnel" : "transport",
        });
      }
    }
  }
  return out;
}

/** The attributes after a fixed header of `fixed` bytes (aligned to 4). */
export function* attributes(payload: Uint8Array, fixed: number): Generator<{ type: number; payload: Uint8Array }> {
  let off = (fixed + 3) & ~3;
  const v = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  while (off + 4 <= payload.length) {
    const len = v.getUint16(off, true);
    if (len < 4 || off + len > payload.length) return;
    yield { type: v.getUint16(off + 2, true) & 0x3fff, payload: payload.subarray(off + 4, off + len) };
    off += (len + 3) & ~3;
  }
}

export const XFRM_LAYOUT = { SELECTOR_SIZE, USERSA_INFO_SIZE, USERSA_ID_SIZE, USERPOLICY_INFO_SIZE, USERPOLICY_ID_SIZE, USER_TMPL_SIZE };
