/** The layout model read from bpf/include/types: what every generator emits from. */

export type Primitive = "u8" | "u16" | "u32" | "u64" | "s8" | "s16" | "s32" | "s64" | "be16" | "be32" | "be64";

export interface FieldModel {
  name: string;
  /** A primitive, or the name of another struct declared earlier. */
  type: Primitive | { struct: string };
  /** Array length; 1 for a scalar. */
  count: number;
  offset: number;
  size: number;
  comment?: string;
}

export interface StructModel {
  name: string;
  file: string;
  packed: boolean;
  size: number;
  align: number;
  fields: FieldModel[];
  comment?: string;
}

export interface EnumMemberModel {
  name: string;
  value: number;
  comment?: string;
}

export interface EnumModel {
  name: string;
  file: string;
  members: EnumMemberModel[];
  comment?: string;
}

export interface LayoutModel {
  enums: EnumModel[];
  structs: StructModel[];
}

export const PRIMITIVE_SIZE: Record<Primitive, number> = {
  u8: 1, u16: 2, u32: 4, u64: 8, s8: 1, s16: 2, s32: 4, s64: 8, be16: 2, be32: 4, be64: 8,
};

/** Kernel type names accepted in headers, and what they are. */
export const C_TYPES: Record<string, Primitive> = {
  __u8: "u8", __u16: "u16", __u32: "u32", __u64: "u64",
  __s8: "s8", __s16: "s16", __s32: "s32", __s64: "s64",
  __be16: "be16", __be32: "be32", __be64: "be64",
};
