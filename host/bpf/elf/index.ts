/** Public surface of the ELF layer: bytes of a compiled BPF object in, plain-data spec out. */
export { readBpfSpec, specToJson, structLayout } from "./spec.js";
export type {
  BpfGlobalSpec, BpfMapSpec, BpfObjectSpec, BpfPinning, BpfProgramSpec, BpfRelocationKind, BpfRelocationSpec,
  BpfStructLayout, BpfStructMemberLayout,
} from "./spec.js";
export { ELF_INVALID, EM_BPF, readElf } from "./elf.js";
export type { ElfFile, ElfHeader, ElfRelocation, ElfRelocationSection, ElfSection, ElfSymbol } from "./elf.js";
export { BTF_INVALID, findDatasec, findStruct, parseBtf, resolveType, structMembers, typeName, typeSize } from "./btf.js";
export type { Btf, BtfType, BtfStructMember } from "./btf.js";
export { readBtfMapDefinitions } from "./map-defs.js";
export type { BtfMapDefinition } from "./map-defs.js";
export { mapTypeName, mapTypeNumber } from "./map-types.js";
