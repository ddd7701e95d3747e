/**
 * ESP (RFC 4303) in tunnel mode with AES-GCM (RFC 4106), carried in UDP
 * (RFC 3948, port 4500), done in userspace with node:crypto. Pure functions
 * over buffers: no sockets, no state beyond what the caller passes (the SA).
 *
 * Wire format of what `seal` returns (the outer IP header is the caller's):
 *   UDP header (8, checksum 0 as RFC 3948 allows over IPv4)
 *   SPI (4) | sequence number (4) | IV (8)
 *   ciphertext of: inner IP packet | padding 1,2,3.. | pad length (1) | next header (1)
 *   ICV (8, 12 or 16)
 * The GCM nonce is salt (4) || IV (8); the AAD is SPI || sequence number
 * (32-bit sequence numbers, no ESN). The IV is the sequence number as 8
 * bytes: unique per packet under one key, which is all GCM asks of it (RFC
 * 4106 section 3.1), and it never repeats because an SA is rotated before its
 * sequence number can wrap.
 */
import { createCipheriv, createDecipheriv } from "node:crypto";
import type { IpsecKey } from "./key-file.js";

export const ESP_UDP_PORT = 4500;
export const UDP_HEADER = 8;
export const ESP_HEADER = 8;
export const ESP_IV = 8;
/** Next-header values of the inner packet. */
export const IPPROTO_IPIP = 4;
export const IPPROTO_IPV6 = 41;
/** The highest sequence number an SA may send; the owner rotates before. */
export const SEQ_MAX = 0xffffffff;

/** Bytes ESP-in-UDP adds to an inner packet of `innerLength`, outer IP header excluded. */
export function espOverhead(innerLength: number, icvBytes: number): number {
  const padded = align4(innerLength + 2);
  return UDP_HEADER + ESP_HEADER + ESP_IV + (padded - innerLength) + icvBytes;
}

/** The worst case for MTU planning: padding of 3 (4-byte alignment) plus the fixed parts. */
export function maxEspOverhead(icvBytes: number): number {
  return UDP_HEADER + ESP_HEADER + ESP_IV + 2 + 3 + icvBytes;
}

function align4(n: number): number {
  return (n + 3) & ~3;
}

export interface SealInput {
  key: IpsecKey;
  /** The outbound SPI on the wire (32 bits; membrane uses the key's SPI). */
  spi: number;
  /** 1..SEQ_MAX, one higher for every packet. */
  seq: number;
  /** The inner IP packet. */
  inner: Uint8Array;
  sourcePort?: number;
}

/** UDP-encapsulated ESP for `inner`. */
export function seal(input: SealInput): Buffer {
  const { key, spi, seq, inner } = input;
  const icv = key.icvBits / 8;
  const version = inner[0]! >> 4;
  const nextHeader = version === 6 ? IPPROTO_IPV6 : IPPROTO_IPIP;
  const plainLength = align4(inner.length + 2);
  const padLength = plainLength - inner.length - 2;
  const out = Buffer.allocUnsafe(UDP_HEADER + ESP_HEADER + ESP_IV + plainLength + icv);
  // UDP (RFC 3948): checksum 0; length covers ESP.
  out.writeUInt16BE(input.sourcePort ?? ESP_UDP_PORT, 0);
  out.writeUInt16BE(ESP_UDP_PORT, 2);
  out.writeUInt16BE(out.length, 4);
  out.writeUInt16BE(0, 6);
  const esp = UDP_HEADER;
  out.writeUInt32BE(spi >>> 0, esp);
  out.writeUInt32BE(seq >>> 0, esp + 4);
  const iv = out.subarray(esp + 8, esp + 16);
  iv.writeUInt32BE(0, 0);
  iv.writeUInt32BE(seq >>> 0, 4);
  const plain = Buffer.allocUnsafe(plainLength);
  plain.set(inner, 0);
  for (let i = 0; i < padLength; i++) plain[inner.length + i] = i + 1;
  plain[plainLength - 2] = padLength;
  plain[plainLength - 1] = nextHeader;
  const cipher = createCipheriv("aes-128-gcm", key.key, Buffer.concat([key.salt, iv]), { authTagLength: icv });
  cipher.setAAD(out.subarray(esp, esp + 8));
  const body = esp + 16;
  const n1 = cipher.update(plain).copy(out, body);
  cipher.final().copy(out, body + n1);
  cipher.getAuthTag().copy(out, body + plainLength);
  return out;
}

/** Why an ESP packet was not accepted: each is a named, counted drop. */
export type EspDrop = "truncated" | "not-esp" | "unknown-spi" | "replayed" | "too-old" | "bad-icv" | "bad-padding" | "bad-next-header";

export interface EspHeader {
  spi: number;
  seq: number;
}

/** Reads SPI and sequence number of a UDP-encapsulated ESP datagram (the UDP header included), or why not. */
export function espHeader(datagram: Uint8Array): EspHeader | EspDrop {
  if (datagram.length < UDP_HEADER + ESP_HEADER + ESP_IV + 2 + 8) return "truncated";
  const view = Buffer.from(datagram.buffer, datagram.byteOffset, datagram.length);
  if (view.readUInt16BE(2) !== ESP_UDP_PORT) return "not-esp";
  const spi = view.readUInt32BE(UDP_HEADER);
  // RFC 3948: a zero "SPI" marks a non-ESP (IKE) packet; a one-byte 0xff is a NAT keepalive.
  if (spi === 0) return "not-esp";
  return { spi, seq: view.readUInt32BE(UDP_HEADER + 4) };
}

/** Decrypts and authenticates; returns the inner packet, or why it was dropped. */
export function open(datagram: Uint8Array, key: IpsecKey): Buffer | EspDrop {
  const icv = key.icvBits / 8;
  const view = Buffer.from(datagram.buffer, datagram.byteOffset, datagram.length);
  const esp = UDP_HEADER;
  const body = esp + 16;
  const cipherLength = view.length - body - icv;
  if (cipherLength < 2 || cipherLength % 4 !== 0) return "truncated";
  const iv = view.subarray(esp + 8, esp + 16);
  let plain: Buffer;
  try {
    const decipher = createDecipheriv("aes-128-gcm", key.key, Buffer.concat([key.salt, iv]), { authTagLength: icv });
    decipher.setAAD(view.subarray(esp, esp + 8));
    decipher.setAuthTag(view.subarray(body + cipherLength));
    plain = Buffer.concat([decipher.update(view.subarray(body, body + cipherLength)), decipher.final()]);
  } catch {
    return "bad-icv";
  }
  const padLength = plain[plain.length - 2]!;
  const nextHeader = plain[plain.length - 1]!;
  const innerLength = plain.length - 2 - padLength;
  if (innerLength < 0) return "bad-padding";
  for (let i = 0; i < padLength; i++) if (plain[innerLength + i] !== i + 1) return "bad-padding";
  if (nextHeader !== IPPROTO_IPIP && nextHeader !== IPPROTO_IPV6) return "bad-next-header";
  const inner = plain.subarray(0, innerLength);
  if (inner.length === 0 || (inner[0]! >> 4) !== (nextHeader === IPPROTO_IPV6 ? 6 : 4)) return "bad-next-header";
  return inner;
}
