/**
 * Names of `enum bpf_map_type` values (linux/include/uapi/linux/bpf.h), spelled
 * as libbpf and bpftool print them, so specs and messages read "lru_hash"
 * rather than 9.
 */

/** Index = BPF_MAP_TYPE_* number. Append only: the kernel never renumbers. */
const MAP_TYPE_NAMES = [
  "unspec",
  "hash",
  "array",
  "prog_array",
  "perf_event_array",
  "percpu_hash",
  "percpu_array",
  "stack_trace",
  "cgroup_array",
  "lru_hash",
  "lru_percpu_hash",
  "lpm_trie",
  "array_of_maps",
  "hash_of_maps",
  "devmap",
  "sockmap",
  "cpumap",
  "xskmap",
  "sockhash",
  "cgroup_storage",
  "reuseport_sockarray",
  "percpu_cgroup_storage",
  "queue",
  "stack",
  "sk_storage",
  "devmap_hash",
  "struct_ops",
  "ringbuf",
  "inode_storage",
  "task_storage",
  "bloom_filter",
  "user_ringbuf",
  "cgrp_storage",
  "arena",
] as const;

export type KnownMapTypeName = (typeof MAP_TYPE_NAMES)[number];

/**
 * The name of a map type number; numbers newer than this table come back as
 * "unknown_<n>" rather than failing, because the kernel may still know them.
 */
export function mapTypeName(type: number): string {
  return MAP_TYPE_NAMES[type] ?? `unknown_${type}`;
}

/** The number of a map type name, or undefined if the name is not known. */
export function mapTypeNumber(name: string): number | undefined {
  const i = (MAP_TYPE_NAMES as readonly string[]).indexOf(name);
  return i < 0 ? undefined : i;
}
