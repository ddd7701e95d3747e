/**
 * etcd's RangeResponse read straight from its protobuf bytes into membrane's
 * KeyValue (strings, numbers), for lists. The etcd3 library decodes every
 * reply with protobufjs into objects (a Buffer per key and per value, each
 * int64 turned into a string through Long), and the store then turned those
 * into strings and numbers again: at 5,000 agents each listing 225,000
 * records, that conversion was about half of a list's client-side CPU and
 * much of its garbage (bench/scale-join.ts; docs/scale.md). Only the fields
 * a list uses are read; every other field is skipped by its wire type, so a
 * newer etcd adding fields still decodes.
 *
 *   RangeResponse  { ResponseHeader header = 1; repeated KeyValue kvs = 2; bool more = 3; int64 count = 4; }
 *   ResponseHeader { uint64 cluster_id = 1; uint64 member_id = 2; int64 revision = 3; uint64 raft_term = 4; }
 *   KeyValue       { bytes key = 1; int64 create_revision = 2; int64 mod_revision = 3; int64 version = 4; bytes value = 5; int64 lease = 6; }
 */
import type { KeyValue } from "../store.js";

export interface DecodedRange {
  /** The header's revision (the store's revision at the read). */
  revision: number;
  kvs: KeyValue[];
  more: boolean;
  count: number;
}

class Reader {
  pos = 0;
  constructor(readonly buf: Buffer, readonly end: number) {}

  /** A varint as a number: exact up to 2^53 (revisions and counts; leases go through varintDecimal). */
  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new Error("etcd range response: truncated varint");
      const b = this.buf[this.pos++]!;
      result += (b & 0x7f) * scale;
      if (b < 0x80) return result;
      scale *= 128;
    }
    throw new Error("etcd range response: varint longer than 10 bytes");
  }

  /** An int64 varint as its exact decimal text (lease IDs use all 64 bits). */
  varintDecimal(): string {
    let result = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new Error("etcd range response: truncated varint");
      const b = this.buf[this.pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return BigInt.asIntN(64, result).toString();
      shift += 7n;
    }
    throw new Error("etcd range response: varint longer than 10 bytes");
  }

  /** The end offset of a length-delimited field starting here. */
  delimited(): number {
    const len = this.varint();
    const end = this.pos + len;
    if (end > this.end) throw new Error("etcd range response: field runs past its message");
    return end;
  }

  skip(wireType: number): void {
    switch (wireType) {
      case 0: this.varint(); return;
      case 1: this.pos += 8; break;
      case 2: this.pos = this.delimited(); return;
      case 5: this.pos += 4; break;
      default: throw new Error(`etcd range response: unsupported wire type ${wireType}`);
    }
    if (this.pos > this.end) throw new Error("etcd range response: fixed field runs past its message");
  }
}

function readHeaderRevision(r: Reader, end: number): number {
  let revision = 0;
  while (r.pos < end) {
    const tag = r.varint();
    if (tag >>> 3 === 3 && (tag & 7) === 0) revision = r.varint();
    else r.skip(tag & 7);
  }
  return revision;
}

function readKeyValue(r: Reader, end: number): KeyValue {
  let key = "";
  let value = "";
  let createRevision = 0;
  let modRevision = 0;
  let version = 0;
  let lease: string | undefined;
  const buf = r.buf;
  while (r.pos < end) {
    const tag = r.varint();
    const field = tag >>> 3;
    const wire = tag & 7;
    if (wire === 2 && (field === 1 || field === 5)) {
      const to = r.delimited();
      const text = buf.toString("utf8", r.pos, to);
      if (field === 1) key = text;
      else value = text;
      r.pos = to;
    } else if (wire === 0 && field === 2) createRevision = r.varint();
    else if (wire === 0 && field === 3) modRevision = r.varint();
    else if (wire === 0 && field === 4) version = r.varint();
    else if (wire === 0 && field === 6) {
      const id = r.varintDecimal();
      lease = id === "0" ? undefined : id;
    } else r.skip(wire);
  }
  return { key, value, createRevision, modRevision, version, lease };
}

export function decodeRangeResponse(buf: Buffer): DecodedRange {
  const r = new Reader(buf, buf.length);
  const out: DecodedRange = { revision: 0, kvs: [], more: false, count: 0 };
  while (r.pos < r.end) {
    const tag = r.varint();
    const field = tag >>> 3;
    const wire = tag & 7;
    if (wire === 2 && field === 1) {
      const end = r.delimited();
      out.revision = readHeaderRevision(r, end);
      r.pos = end;
    } else if (wire === 2 && field === 2) {
      const end = r.delimited();
      out.kvs.push(readKeyValue(r, end));
      r.pos = end;
    } else if (wire === 0 && field === 3) out.more = r.varint() !== 0;
    else if (wire === 0 && field === 4) out.count = r.varint();
    else r.skip(wire);
  }
  return out;
}
