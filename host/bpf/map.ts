/**
 * A kernel BPF map, accessed by fd through libbpf's low-level API. Keys and
 * values are raw bytes: encoding belongs to the generated codecs (one layout,
 * three languages), not here.
 *
 * A map either belongs to a BpfObject (the object owns the fd and closes it)
 * or was opened from a pin with BpfMap.openPinned (the map owns its fd; call
 * close()).
 */
import { readFileSync, unlinkSync } from "node:fs";
import { dirname } from "node:path";
import { InvalidInputError, MembraneError } from "../errors.js";
import { isOnBpffs } from "./bpffs.js";
import { possibleCpus } from "./cpus.js";
import { BpfSyscallError } from "./errors.js";
import { captureLibbpfLog } from "./libbpf-log.js";
import { noteMapOp } from "./syscall-observer.js";
import { check, decodeStruct, describeErrno, libbpf, type Ptr } from "./libbpf.js";
import { libc } from "../sys/libc.js";
import { mapTypeName } from "./elf/map-types.js";

const ENOENT = 2;
const E2BIG = 7;
const EEXIST = 17;
const EINVAL = 22;
const ENOSPC = 28;
const EOPNOTSUPP = 95;
const ENOTSUPP = 524;

/** enum bpf_map_type values that matter to the host (linux/bpf.h). */
export const MapType = {
  HASH: 1,
  ARRAY: 2,
  PROG_ARRAY: 3,
  PERCPU_HASH: 5,
  PERCPU_ARRAY: 6,
  LRU_HASH: 9,
  LRU_PERCPU_HASH: 10,
  LPM_TRIE: 11,
  PERCPU_CGROUP_STORAGE: 21,
} as const;

const PER_CPU_TYPES = new Set<number>([
  MapType.PERCPU_HASH,
  MapType.PERCPU_ARRAY,
  MapType.LRU_PERCPU_HASH,
  MapType.PERCPU_CGROUP_STORAGE,
]);

/** Maps whose entries always exist: delete is EINVAL, clearing means zeroing. */
const ARRAY_TYPES = new Set<number>([MapType.ARRAY, MapType.PERCPU_ARRAY]);

export type MapUpdateFlag = "any" | "noexist" | "exist";
/** BPF_ANY, BPF_NOEXIST, BPF_EXIST. */
export const MAP_UPDATE_FLAGS: Readonly<Record<MapUpdateFlag, number>> = { any: 0, noexist: 1, exist: 2 };

/** What the kernel says about a map (struct bpf_map_info, the fields we use). */
export interface BpfMapInfo {
  name: string;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  /** libbpf's own .data/.rodata/.bss/.kconfig maps (never pinned by BpfObject). */
  internal?: boolean;
}

/** Lets a map refuse use after its owning object closed. */
export interface FdOwner {
  readonly closed: boolean;
  readonly description: string;
}

/**
 * Reads a map's definition from the kernel via bpf_obj_get_info_by_fd.
 * `action` starts error messages ("open pinned map /sys/fs/bpf/x").
 */
export function mapInfoByFd(fd: number, action: string): BpfMapInfo {
  if (!isMapFd(fd)) throw new InvalidInputError(`${action}: not a BPF map`);
  const lib = libbpf();
  const type = lib.structs.bpf_map_info;
  const info = Buffer.alloc(type.size);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(type.size);
  check(lib.bpf_obj_get_info_by_fd(fd, info, len), `${action}: read map info`);
  const d = decodeStruct(info, type);
  const nameBytes = Uint8Array.from(d.name as number[]);
  const end = nameBytes.indexOf(0);
  return {
    name: Buffer.from(nameBytes.subarray(0, end < 0 ? nameBytes.length : end)).toString("utf8"),
    type: d.type as number,
    keySize: d.key_size as number,
    valueSize: d.value_size as number,
    maxEntries: d.max_entries as number,
    flags: d.map_flags as number,
  };
}

/** The kernel's name for a map type ("hash", "percpu_array"), or "type N". */
export { mapTypeName };

export class BpfMap {
  readonly name: string;
  /** enum bpf_map_type. */
  readonly type: number;
  readonly keySize: number;
  /** Size of one value as declared (one CPU's value for per-CPU maps). */
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly flags: number;
  /** A libbpf global-data map (.data, .rodata, .bss, .kconfig). */
  readonly internal: boolean;
  /** Per-CPU maps read and write one value slot per possible CPU. */
  readonly perCpu: boolean;
  /**
   * Bytes of a value as lookup() returns and update() expects it: valueSize,
   * or for per-CPU maps valueSize rounded up to 8, times possible CPUs.
   */
  readonly valueBufferSize: number;

  #fd: number;
  #owner: FdOwner | undefined;
  #libbpfMap: Ptr | undefined;
  #closed = false;
  #pinnedPath: string | undefined;

  /**
   * Internal: BpfObject and openPinned build maps. `owner` set means the fd is
   * borrowed from that owner; unset means this map owns (and closes) it.
   */
  constructor(info: BpfMapInfo, fd: number, owner?: FdOwner, libbpfMap?: Ptr) {
    this.name = info.name;
    this.type = info.type;
    this.keySize = info.keySize;
    this.valueSize = info.valueSize;
    this.maxEntries = info.maxEntries;
    this.flags = info.flags;
    this.internal = info.internal ?? false;
    this.perCpu = PER_CPU_TYPES.has(info.type);
    this.valueBufferSize = this.perCpu ? roundUp8(info.valueSize) * possibleCpus() : info.valueSize;
    this.#fd = fd;
    this.#owner = owner;
    this.#libbpfMap = libbpfMap;
  }

  /** The map's fd; throws once the map (or its object) is closed. */
  get fd(): number {
    if (this.#closed || this.#owner?.closed) {
      const what = this.#owner ? this.#owner.description : "it";
      throw new MembraneError("BPF_CLOSED", `map ${this.name}: ${what} is closed`);
    }
    return this.#fd;
  }

  /** "hash", "percpu_array", ... as libbpf names the type. */
  get typeName(): string {
    return mapTypeName(this.type);
  }

  /** Where pin() (or BpfObject.load with pinDir) pinned this map. */
  get pinnedPath(): string | undefined {
    return this.#pinnedPath;
  }

  /** A copy of the value at `key`, or undefined if absent. Per-CPU: all CPUs' slots concatenated. */
  lookup(key: Uint8Array): Uint8Array | undefined {
    this.#checkKey(key);
    const value = new Uint8Array(this.valueBufferSize);
    const ret = libbpf().bpf_map_lookup_elem(this.fd, key, value);
    noteMapOp(this.name, "lookup", ret === -ENOENT ? 0 : ret);
    if (ret === -ENOENT) return undefined;
    check(ret, `look up in map ${this.name}`);
    return value;
  }

  /** Inserts or replaces; `flags` "noexist" fails if present, "exist" fails if absent. */
  update(key: Uint8Array, value: Uint8Array, flags: MapUpdateFlag = "any"): void {
    this.#checkKey(key);
    if (!Object.hasOwn(MAP_UPDATE_FLAGS, flags)) throw new InvalidInputError(`map update flag must be any, noexist or exist, got ${flags}`);
    if (value.length !== this.valueBufferSize) {
      const per = this.perCpu ? ` (${possibleCpus()} CPUs x ${roundUp8(this.valueSize)} bytes)` : "";
      throw new InvalidInputError(`value for map ${this.name} must be ${this.valueBufferSize} bytes${per}, got ${value.length}`);
    }
    const ret = libbpf().bpf_map_update_elem(this.fd, key, value, MAP_UPDATE_FLAGS[flags]);
    noteMapOp(this.name, "update", ret);
    if (ret >= 0) return;
    let hint = "";
    if (ret === -EEXIST && flags === "noexist") hint = ": key already present";
    else if (ret === -ENOENT && flags === "exist") hint = ": key not present";
    else if (ret === -E2BIG) hint = `: map is full (max_entries ${this.maxEntries}) or key out of range`;
    throw new BpfSyscallError(`update map ${this.name}: ${describeErrno(ret)}${hint}`, ret);
  }

  /** Removes `key`; false if it was absent. Array maps cannot delete (use update or clear). */
  delete(key: Uint8Array): boolean {
    this.#checkKey(key);
    const ret = libbpf().bpf_map_delete_elem(this.fd, key);
    noteMapOp(this.name, "delete", ret === -ENOENT ? 0 : ret);
    if (ret === -ENOENT) return false;
    if (ret === -EINVAL && ARRAY_TYPES.has(this.type)) {
      throw new BpfSyscallError(`delete from map ${this.name}: array maps have no delete; write a zero value instead`, ret);
    }
    check(ret, `delete from map ${this.name}`);
    return true;
  }

  /** Copies of every key, in the kernel's iteration order. */
  *keys(): Generator<Uint8Array> {
    const lib = libbpf();
    let prev: Uint8Array | null = null;
    for (;;) {
      const next = new Uint8Array(this.keySize);
      const ret = lib.bpf_map_get_next_key(this.fd, prev, next);
      if (ret === -ENOENT) return;
      check(ret, `iterate map ${this.name}`);
      yield next.slice();
      prev = next;
    }
  }

  /**
   * Copies of every (key, value), walking with get_next_key. Changing the map
   * while iterating is allowed; a hash map whose previous key vanished
   * restarts from its first key, so an entry may then be seen twice.
   */
  *entries(): Generator<[Uint8Array, Uint8Array]> {
    for (const key of this.keys()) {
      const value = this.lookup(key);
      if (value !== undefined) yield [key, value];
    }
  }

  /**
   * Every entry, read in batches of `batchSize` with BPF_MAP_LOOKUP_BATCH (one
   * syscall per batch instead of two per entry). Falls back to entries() on
   * map types or kernels without batch support.
   */
  dump(batchSize = 256): Array<[Uint8Array, Uint8Array]> {
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new InvalidInputError(`batch size must be a positive integer, got ${batchSize}`);
    const lib = libbpf();
    const out: Array<[Uint8Array, Uint8Array]> = [];
    let n = Math.min(batchSize, Math.max(this.maxEntries, 1));
    // The batch cursor is opaque: a u32 bucket for hash maps, a key for arrays.
    const tokenSize = Math.max(this.keySize, 8);
    let inBatch: Uint8Array | null = null;
    for (;;) {
      const outBatch = new Uint8Array(tokenSize);
      const keys = new Uint8Array(this.keySize * n);
      const values = new Uint8Array(this.valueBufferSize * n);
      const count = Buffer.alloc(4);
      count.writeUInt32LE(n);
      const ret = lib.bpf_map_lookup_batch(this.fd, inBatch, outBatch, keys, values, count, null);
      const got = count.readUInt32LE();
      if (ret < 0 && ret !== -ENOENT) {
        if (ret === -ENOSPC && got === 0 && n < 1 << 20) {
          // One hash bucket holds more entries than fit: retry with room for it.
          n *= 2;
          continue;
        }
        const unsupported = ret === -EINVAL || ret === -EOPNOTSUPP || ret === -ENOTSUPP;
        if (unsupported && inBatch === null) return [...this.entries()];
        check(ret, `dump map ${this.name}`);
      }
      for (let i = 0; i < got; i++) {
        out.push([
          keys.slice(i * this.keySize, (i + 1) * this.keySize),
          values.slice(i * this.valueBufferSize, (i + 1) * this.valueBufferSize),
        ]);
      }
      if (ret === -ENOENT) return out;
      inBatch = outBatch;
    }
  }

  /** Empties the map: deletes every key, or zeroes every slot of an array map. */
  clear(): void {
    if (ARRAY_TYPES.has(this.type)) {
      const zero = new Uint8Array(this.valueBufferSize);
      for (const key of this.keys()) this.update(key, zero, "exist");
      return;
    }
    // Collect first: deleting while walking makes hash iteration restart.
    const keys = [...this.keys()];
    for (const key of keys) this.delete(key);
  }

  /** Splits a per-CPU lookup result into one valueSize view per CPU. */
  perCpuValues(value: Uint8Array): Uint8Array[] {
    if (!this.perCpu) return [value];
    const stride = roundUp8(this.valueSize);
    const cpus = value.length / stride;
    return Array.from({ length: cpus }, (_, i) => value.subarray(i * stride, i * stride + this.valueSize));
  }

  /** Pins the map at `path` on bpffs so it outlives this process. */
  pin(path: string): void {
    const lib = libbpf();
    captureLibbpfLog((log) => {
      const ret = this.#libbpfMap !== undefined ? lib.bpf_map__pin(this.#libbpfMap, path) : lib.bpf_obj_pin(this.fd, path);
      if (ret < 0) throw pinError(`pin map ${this.name} at ${path}`, ret, path, log.text("warn"));
    });
    this.#pinnedPath = path;
  }

  /** Removes the pin at `path` (default: where this map was pinned). The map itself stays. */
  unpin(path: string | undefined = this.#pinnedPath): void {
    if (path === undefined) throw new InvalidInputError(`map ${this.name} is not pinned; pass the path to unpin`);
    const lib = libbpf();
    if (this.#libbpfMap !== undefined && !this.#owner?.closed) {
      captureLibbpfLog((log) => check(lib.bpf_map__unpin(this.#libbpfMap!, path), `unpin map ${this.name} at ${path}`, log.text("warn")));
    } else {
      try {
        unlinkSync(path);
      } catch (err) {
        throw new MembraneError("BPF_SYSCALL", `unpin map ${this.name} at ${path}: ${(err as Error).message}`, { cause: err });
      }
    }
    if (path === this.#pinnedPath) this.#pinnedPath = undefined;
  }

  /** Internal: BpfObject records pins it made at load. */
  markPinned(path: string): void {
    this.#pinnedPath = path;
  }

  /** Closes an fd this map owns (openPinned). For an object's map, a no-op: the object closes it. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#owner === undefined) libc().close(this.#fd);
  }

  /**
   * Opens a map pinned on bpffs by path, without its object: what a CLI needs
   * to read a running datapath's tables. The returned map owns its fd.
   */
  static openPinned(path: string): BpfMap {
    const lib = libbpf();
    const fd = captureLibbpfLog((log) => {
      const ret = lib.bpf_obj_get(path);
      if (ret < 0) {
        const hint = ret === -ENOENT ? ": nothing is pinned there" : "";
        throw new BpfSyscallError(`open pinned map ${path}: ${describeErrno(ret)}${hint}`, ret, log.text("warn"));
      }
      return ret;
    });
    try {
      return new BpfMap(mapInfoByFd(fd, `open pinned map ${path}`), fd);
    } catch (err) {
      libc().close(fd);
      throw err;
    }
  }

  #checkKey(key: Uint8Array): void {
    if (!(key instanceof Uint8Array)) throw new InvalidInputError(`key for map ${this.name} must be a Uint8Array`);
    if (key.length !== this.keySize) {
      throw new InvalidInputError(`key for map ${this.name} must be ${this.keySize} bytes, got ${key.length}`);
    }
  }
}

function roundUp8(n: number): number {
  return (n + 7) & ~7;
}

/** /proc/self/fdinfo says "map_type:" for maps, "prog_type:" for programs. */
function isMapFd(fd: number): boolean {
  try {
    return /^map_type:/m.test(readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"));
  } catch {
    return true; // no procfs: let bpf_obj_get_info_by_fd decide
  }
}

function pinError(action: string, ret: number, path: string, log: string): BpfSyscallError {
  let hint = "";
  if (ret === -EEXIST) hint = ": something is already pinned there";
  else if (ret === -ENOENT) hint = ": the directory does not exist (ensurePinDir creates it)";
  else {
    let onBpffs = true;
    try {
      onBpffs = isOnBpffs(dirname(path));
    } catch {
      // keep the errno message alone
    }
    if (!onBpffs) hint = ": the directory is not on a bpf filesystem (see ensurePinDir)";
  }
  return new BpfSyscallError(`${action}: ${describeErrno(ret)}${hint}`, ret, log);
}
