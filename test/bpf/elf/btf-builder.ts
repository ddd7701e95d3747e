// Writes raw .BTF section bytes, for BTF the clang on this machine cannot emit
// (ENUM64 needs clang 15) and for corrupt BTF (loops, dangling ids). The
// encoding follows linux/include/uapi/linux/btf.h.

export const KIND = {
  INT: 1, PTR: 2, ARRAY: 3, STRUCT: 4, UNION: 5, ENUM: 6, FWD: 7, TYPEDEF: 8, VOLATILE: 9, CONST: 10,
  RESTRICT: 11, FUNC: 12, FUNC_PROTO: 13, VAR: 14, DATASEC: 15, FLOAT: 16, DECL_TAG: 17, TYPE_TAG: 18, ENUM64: 19,
} as const;

export class BtfBuilder {
  private readonly strings: number[] = [0];
  private readonly stringOffsets = new Map<string, number>([["", 0]]);
  private readonly words: number[] = [];
  private count = 0;

  /** Offset of `s` in the string section, adding it if new. */
  str(s: string): number {
    const known = this.stringOffsets.get(s);
    if (known !== undefined) return known;
    const off = this.strings.length;
    this.strings.push(...new TextEncoder().encode(s), 0);
    this.stringOffsets.set(s, off);
    return off;
  }

  /** Appends one type record; returns its id. `extra` is the kind-specific tail, in u32 words. */
  type(kind: number, name: string, vlen: number, sizeOrType: number, extra: number[] = [], kindFlag = false): number {
    const info = ((kindFlag ? 1 : 0) << 31) | (kind << 24) | vlen;
    this.words.push(this.str(name), info >>> 0, sizeOrType >>> 0, ...extra.map((w) => w >>> 0));
    return ++this.count;
  }

  int(name: string, size: number, bits: number, encoding = 0): number {
    return this.type(KIND.INT, name, 0, size, [(encoding << 24) | bits]);
  }

  ref(kind: number, name: string, target: number): number {
    return this.type(kind, name, 0, target);
  }

  array(elem: number, index: number, nelems: number): number {
    return this.type(KIND.ARRAY, "", 0, 0, [elem, index, nelems]);
  }

  composite(kind: number, name: string, size: number, members: { name: string; type: number; offset: number }[], kindFlag = false): number {
    return this.type(kind, name, members.length, size, members.flatMap((m) => [this.str(m.name), m.type, m.offset]), kindFlag);
  }

  bytes(): Uint8Array {
    const typeLen = this.words.length * 4;
    const out = new Uint8Array(24 + typeLen + this.strings.length);
    const v = new DataView(out.buffer);
    v.setUint16(0, 0xeb9f, true);
    v.setUint8(2, 1);
    v.setUint8(3, 0);
    v.setUint32(4, 24, true);
    v.setUint32(8, 0, true);
    v.setUint32(12, typeLen, true);
    v.setUint32(16, typeLen, true);
    v.setUint32(20, this.strings.length, true);
    this.words.forEach((w, i) => v.setUint32(24 + i * 4, w, true));
    out.set(this.strings, 24 + typeLen);
    return out;
  }
}
