/**
 * BTF-defined maps: the `struct { __uint(...); __type(...); } name SEC(".maps")`
 * convention of libbpf. The values are not in the section bytes (those are all
 * zero); they are encoded in the *types* of the struct's members:
 *
 *   __uint(name, val)   is  int (*name)[val]   -> PTR to ARRAY, value = nelems
 *   __type(name, T)     is  typeof(T) *name    -> PTR to T, size = sizeof(T)
 *   __array(name, T)    is  T *name[]          -> ARRAY(0) of PTR to T (map-in-map)
 *
 * Field names and rules follow libbpf's parse_btf_map_def (libbpf/src/libbpf.c),
 * including rejecting unknown fields, so a misspelt `max_entires` fails here
 * rather than producing a zero-sized map.
 */
import type { MembraneError } from "../../errors.js";
import { btfError, findDatasec, resolveType, typeSize, type Btf, type BtfComposite } from "./btf.js";

export interface BtfMapDefinition {
  /** The map variable's name (the symbol in .maps). */
  name: string;
  /** BTF id of the definition struct, for messages about it. */
  typeId: number;
  /** BPF_MAP_TYPE_* number; undefined when the definition does not set it. */
  type?: number;
  keySize?: number;
  valueSize?: number;
  maxEntries?: number;
  flags?: number;
  numaNode?: number;
  pinning?: number;
  mapExtra?: number;
  /** BTF ids of the key/value types when given with __type(). */
  keyType?: number;
  valueType?: number;
  /** The inner map's definition of a map-in-map, from __array(values, struct {...}). */
  inner?: BtfMapDefinition;
}

const UINT_FIELDS = {
  type: "type",
  max_entries: "maxEntries",
  map_flags: "flags",
  numa_node: "numaNode",
  pinning: "pinning",
  map_extra: "mapExtra",
} as const satisfies Record<string, keyof BtfMapDefinition>;

/** `id` is the BTF type the problem is in, so the message can give its file offset. */
function invalid(btf: Btf, id: number, map: string, message: string): MembraneError {
  return btfError(`map '${map}': ${message}`, btf, id);
}

/** Every map defined in the ".maps" DATASEC, in declaration order. */
export function readBtfMapDefinitions(btf: Btf): BtfMapDefinition[] {
  const sec = findDatasec(btf, ".maps");
  if (!sec) return [];
  return sec.vars.map((v) => {
    const variable = resolveType(btf, v.type);
    if (variable.kind !== "var") {
      throw btfError(`.maps entry type #${v.type} has BTF kind ${variable.kind}, not a variable`, btf, sec.id);
    }
    const def = resolveType(btf, variable.type);
    if (def.kind !== "struct") {
      throw invalid(btf, variable.id, variable.name, `definition has BTF kind ${def.kind}, want a struct (struct { __uint(type, ...); ... })`);
    }
    return parseDefinition(btf, variable.name, def, false);
  });
}

function parseDefinition(btf: Btf, name: string, def: BtfComposite, isInner: boolean): BtfMapDefinition {
  const out: BtfMapDefinition = { name, typeId: def.id };
  for (const m of def.members) {
    const field = m.name;
    if (field === "key_size" || field === "value_size") {
      // key_size and __type(key, T) may both be given, in either order; they must agree.
      const which = field === "key_size" ? "key" : "value";
      const prop = field === "key_size" ? "keySize" : "valueSize";
      out[prop] = agree(btf, def.id, name, which, out[prop], uintField(btf, def.id, name, field, m.type));
    } else if (Object.hasOwn(UINT_FIELDS, field)) {
      out[UINT_FIELDS[field as keyof typeof UINT_FIELDS]] = uintField(btf, def.id, name, field, m.type);
    } else if (field === "key" || field === "value") {
      const ptr = resolveType(btf, m.type);
      if (ptr.kind !== "ptr") throw invalid(btf, def.id, name, `'${field}' has BTF kind ${ptr.kind}, want a pointer (__type(${field}, T))`);
      const size = typeSize(btf, ptr.type);
      if (field === "key") {
        out.keyType = ptr.type;
        out.keySize = agree(btf, def.id, name, "key", out.keySize, size);
      } else {
        out.valueType = ptr.type;
        out.valueSize = agree(btf, def.id, name, "value", out.valueSize, size);
      }
    } else if (field === "values") {
      if (isInner) throw invalid(btf, def.id, name, "an inner map cannot have 'values' (multi-level inner maps)");
      if (m !== def.members[def.members.length - 1]) throw invalid(btf, def.id, name, "'values' must be the last member");
      // Map-in-map and prog-array values are fds: 4 bytes whatever the declaration says.
      out.valueSize = agree(btf, def.id, name, "value", out.valueSize, 4);
      const inner = innerDefinition(btf, def.id, name, out.type, m.type);
      if (inner) out.inner = inner;
    } else {
      throw invalid(btf, def.id, name, `unknown field '${field}' in the map definition`);
    }
  }
  return out;
}

/** __uint(name, val): a pointer to an array whose element count is the value. */
function uintField(btf: Btf, defId: number, map: string, field: string, id: number): number {
  const ptr = resolveType(btf, id);
  if (ptr.kind !== "ptr") throw invalid(btf, defId, map, `'${field}' has BTF kind ${ptr.kind}, want __uint(${field}, N) (a pointer to an array)`);
  const arr = resolveType(btf, ptr.type);
  if (arr.kind !== "array") throw invalid(btf, defId, map, `'${field}' points to BTF kind ${arr.kind}, want __uint(${field}, N) (a pointer to an array)`);
  return arr.nelems;
}

function agree(btf: Btf, id: number, map: string, what: string, previous: number | undefined, size: number): number {
  if (previous !== undefined && previous !== size) {
    throw invalid(btf, id, map, `${what}_size and __type(${what}, T) disagree: ${previous} vs ${size} bytes`);
  }
  return size;
}

const BPF_MAP_TYPE_PROG_ARRAY = 3;
const BPF_MAP_TYPE_ARRAY_OF_MAPS = 12;
const BPF_MAP_TYPE_HASH_OF_MAPS = 13;

/**
 * __array(values, struct {...}): the inner map template of a map-in-map. A
 * prog array's __array(values, int (void *)) names programs, not a map, so it
 * has no inner definition. As in libbpf, `type` must come before `values`.
 */
function innerDefinition(btf: Btf, defId: number, map: string, mapType: number | undefined, id: number): BtfMapDefinition | undefined {
  const isProgArray = mapType === BPF_MAP_TYPE_PROG_ARRAY;
  if (!isProgArray && mapType !== BPF_MAP_TYPE_ARRAY_OF_MAPS && mapType !== BPF_MAP_TYPE_HASH_OF_MAPS) {
    throw invalid(btf, defId, map, "'values' is only for map-in-map and prog-array maps (set type first)");
  }
  const arr = resolveType(btf, id);
  if (arr.kind !== "array" || arr.nelems !== 0) throw invalid(btf, defId, map, "'values' is not a zero-sized array (__array(values, T))");
  const ptr = resolveType(btf, arr.type);
  if (ptr.kind !== "ptr") throw invalid(btf, defId, map, `'values' elements have BTF kind ${ptr.kind}, want pointers`);
  const target = resolveType(btf, ptr.type);
  if (isProgArray) {
    if (target.kind !== "func_proto") throw invalid(btf, defId, map, `prog-array 'values' point to BTF kind ${target.kind}, want a function prototype`);
    return undefined;
  }
  if (target.kind !== "struct") throw invalid(btf, defId, map, `'values' point to BTF kind ${target.kind}, want a map definition struct`);
  return parseDefinition(btf, `${map}.inner`, target, true);
}
