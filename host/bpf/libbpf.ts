/**
 * Bindings to libbpf.so.1 through koffi.
 *
 * Why libbpf and not our own loader: it already does ELF parsing, BTF
 * sanitizing, CO-RE and map relocation, and map creation the way the kernel
 * expects; the pure-data ELF spec lives elsewhere (host/bpf/elf/). This file
 * is only the seam: C signatures, the option structs (whose layouts
 * test/bpf/layout.test.ts checks against the installed headers), errno to
 * message conversion, and the print callback that routes libbpf's log into
 * libbpf-log.ts.
 *
 * Everything is loaded on first use so that importing host/bpf/ costs nothing
 * on machines without libbpf.
 *
 * Conventions of libbpf >= 1.0 that the callers rely on: int-returning calls
 * return a negative errno on failure; pointer-returning calls return NULL and
 * set errno.
 */
import { NotSupportedError } from "../errors.js";
import { errnoName } from "../sys/errno.js";
import { BpfSyscallError } from "./errors.js";
import { koffi, type Koffi, type NativeFunction } from "../sys/ffi.js";
import { libc } from "../sys/libc.js";
import { emitLibbpfMessage, LIBBPF_LEVELS, libbpfLevelWanted } from "./libbpf-log.js";
import { instrumentSyscalls } from "./syscall-observer.js";

/** An opaque native pointer (struct bpf_object *, struct bpf_map *, ...). */
export type Ptr = bigint;

type TypeObject = ReturnType<Koffi["struct"]>;

/** koffi descriptions of the C structs we fill in; layouts match libbpf 1.1 headers. */
export interface LibbpfStructs {
  bpf_object_open_opts: TypeObject;
  bpf_test_run_opts: TypeObject;
  bpf_tc_hook: TypeObject;
  bpf_tc_opts: TypeObject;
  bpf_map_batch_opts: TypeObject;
  bpf_map_info: TypeObject;
}

export interface Libbpf {
  readonly version: string;
  readonly structs: LibbpfStructs;

  bpf_object__open_mem(buf: Buffer, size: number, opts: Buffer | null): Ptr | null;
  bpf_object__load(obj: Ptr): number;
  bpf_object__close(obj: Ptr): void;
  bpf_object__name(obj: Ptr): string;
  bpf_object__find_map_by_name(obj: Ptr, name: string): Ptr | null;
  bpf_object__find_program_by_name(obj: Ptr, name: string): Ptr | null;
  bpf_object__next_map(obj: Ptr, prev: Ptr | null): Ptr | null;
  bpf_object__next_program(obj: Ptr, prev: Ptr | null): Ptr | null;

  bpf_map__name(map: Ptr): string;
  bpf_map__fd(map: Ptr): number;
  bpf_map__type(map: Ptr): number;
  bpf_map__key_size(map: Ptr): number;
  bpf_map__value_size(map: Ptr): number;
  bpf_map__max_entries(map: Ptr): number;
  bpf_map__map_flags(map: Ptr): number;
  bpf_map__is_internal(map: Ptr): boolean;
  bpf_map__set_max_entries(map: Ptr, n: number): number;
  bpf_map__set_type(map: Ptr, type: number): number;
  bpf_map__pin(map: Ptr, path: string): number;
  bpf_map__unpin(map: Ptr, path: string): number;
  bpf_map__reuse_fd(map: Ptr, fd: number): number;
  /** A copy of the map's initial contents (.data/.rodata/.bss and their custom sections), or null. */
  bpf_map__initial_value(map: Ptr): Uint8Array | null;
  bpf_map__set_initial_value(map: Ptr, data: Uint8Array, size: number): number;

  bpf_program__name(prog: Ptr): string;
  bpf_program__section_name(prog: Ptr): string;
  bpf_program__fd(prog: Ptr): number;
  bpf_program__type(prog: Ptr): number;
  bpf_program__set_autoload(prog: Ptr, autoload: boolean): number;

  bpf_map_lookup_elem(fd: number, key: Uint8Array, value: Uint8Array): number;
  bpf_map_update_elem(fd: number, key: Uint8Array, value: Uint8Array, flags: number): number;
  bpf_map_delete_elem(fd: number, key: Uint8Array): number;
  bpf_map_get_next_key(fd: number, key: Uint8Array | null, next: Uint8Array): number;
  bpf_map_lookup_batch(
    fd: number,
    inBatch: Uint8Array | null,
    outBatch: Uint8Array,
    keys: Uint8Array,
    values: Uint8Array,
    count: Uint8Array,
    opts: Buffer | null,
  ): number;
  bpf_prog_test_run_opts(fd: number, opts: Buffer): number;
  bpf_map_create(type: number, name: string | null, keySize: number, valueSize: number, maxEntries: number, opts: null): number;
  bpf_prog_load(type: number, name: string | null, license: string, insns: Uint8Array, count: number, opts: null): number;
  bpf_obj_pin(fd: number, path: string): number;
  bpf_obj_get(path: string): number;
  bpf_obj_get_info_by_fd(fd: number, info: Uint8Array, len: Uint8Array): number;

  bpf_tc_hook_create(hook: Buffer): number;
  bpf_tc_hook_destroy(hook: Buffer): number;
  bpf_tc_attach(hook: Buffer, opts: Buffer): number;
  bpf_tc_detach(hook: Buffer, opts: Buffer): number;
  bpf_tc_query(hook: Buffer, opts: Buffer): number;

  libbpf_probe_bpf_map_type(type: number, opts: null): number;
  libbpf_probe_bpf_prog_type(type: number, opts: null): number;
  /** 1: `progType` programs may call helper `helperId` on this kernel; 0: not; < 0: error. */
  libbpf_probe_bpf_helper(progType: number, helperId: number, opts: null): number;
  libbpf_bpf_map_type_str(type: number): string | null;
  libbpf_bpf_prog_type_str(type: number): string | null;
  libbpf_strerror(err: number, buf: Buffer, size: number): number;

  /** errno left by the last native call (for NULL-returning calls). */
  errno(): number;
}

/** The bindings that are one bpf(2) call each, by Cilium's operation names (bpf_syscall_duration_seconds). */
const BPF_SYSCALL_OPERATIONS = {
  bpf_map_lookup_elem: "lookup",
  bpf_map_update_elem: "update",
  bpf_map_delete_elem: "delete",
  bpf_map_get_next_key: "getNextKey",
  bpf_map_lookup_batch: "lookupBatch",
  bpf_map_create: "create",
  bpf_prog_load: "progLoad",
  bpf_prog_test_run_opts: "progTestRun",
  bpf_obj_pin: "objPin",
  bpf_obj_get: "objGet",
  bpf_obj_get_info_by_fd: "objGetInfoByFD",
  bpf_object__load: "objectLoad",
} as const;

let cached: Libbpf | undefined;

/** The libbpf bindings; loads libbpf.so.1 on first call. */
export function libbpf(): Libbpf {
  if (cached) return cached;
  const k = koffi();
  let lib: ReturnType<Koffi["load"]>;
  try {
    lib = k.load("libbpf.so.1");
  } catch (err) {
    throw new NotSupportedError(
      "libbpf.so.1 not found: install libbpf1 (Debian/Ubuntu: apt-get install libbpf1; " +
        `Fedora: dnf install libbpf); the kernel datapath needs libbpf >= 1.0 (${(err as Error).message})`,
      { cause: err },
    );
  }
  const fn = (name: string, ret: unknown, args: unknown[]): NativeFunction =>
    lib.func(name, ret as string, args as string[]);

  const major = fn("libbpf_major_version", "uint32_t", [])() as number;
  const minor = fn("libbpf_minor_version", "uint32_t", [])() as number;
  if (major < 1) {
    throw new NotSupportedError(
      `libbpf ${major}.${minor} is too old: membrane needs libbpf >= 1.0 (install libbpf1)`,
    );
  }

  const structs = defineStructs(k);
  const p = "void *";
  const s = "const char *";
  const b = {
    open_mem: fn("bpf_object__open_mem", p, [p, "size_t", p]),
    obj_load: fn("bpf_object__load", "int", [p]),
    obj_close: fn("bpf_object__close", "void", [p]),
    obj_name: fn("bpf_object__name", s, [p]),
    find_map: fn("bpf_object__find_map_by_name", p, [p, s]),
    find_prog: fn("bpf_object__find_program_by_name", p, [p, s]),
    next_map: fn("bpf_object__next_map", p, [p, p]),
    next_prog: fn("bpf_object__next_program", p, [p, p]),
    map_name: fn("bpf_map__name", s, [p]),
    map_fd: fn("bpf_map__fd", "int", [p]),
    map_type: fn("bpf_map__type", "int", [p]),
    map_key_size: fn("bpf_map__key_size", "uint32_t", [p]),
    map_value_size: fn("bpf_map__value_size", "uint32_t", [p]),
    map_max_entries: fn("bpf_map__max_entries", "uint32_t", [p]),
    map_flags: fn("bpf_map__map_flags", "uint32_t", [p]),
    map_is_internal: fn("bpf_map__is_internal", "bool", [p]),
    map_set_max_entries: fn("bpf_map__set_max_entries", "int", [p, "uint32_t"]),
    map_set_type: fn("bpf_map__set_type", "int", [p, "int"]),
    map_pin: fn("bpf_map__pin", "int", [p, s]),
    map_unpin: fn("bpf_map__unpin", "int", [p, s]),
    map_reuse_fd: fn("bpf_map__reuse_fd", "int", [p, "int"]),
    map_initial_value: fn("bpf_map__initial_value", p, [p, p]),
    map_set_initial_value: fn("bpf_map__set_initial_value", "int", [p, p, "size_t"]),
    prog_name: fn("bpf_program__name", s, [p]),
    prog_section: fn("bpf_program__section_name", s, [p]),
    prog_fd: fn("bpf_program__fd", "int", [p]),
    prog_type: fn("bpf_program__type", "int", [p]),
    prog_set_autoload: fn("bpf_program__set_autoload", "int", [p, "bool"]),
    lookup: fn("bpf_map_lookup_elem", "int", ["int", p, p]),
    update: fn("bpf_map_update_elem", "int", ["int", p, p, "uint64_t"]),
    del: fn("bpf_map_delete_elem", "int", ["int", p]),
    next_key: fn("bpf_map_get_next_key", "int", ["int", p, p]),
    lookup_batch: fn("bpf_map_lookup_batch", "int", ["int", p, p, p, p, p, p]),
    test_run: fn("bpf_prog_test_run_opts", "int", ["int", p]),
    map_create: fn("bpf_map_create", "int", ["int", s, "uint32_t", "uint32_t", "uint32_t", p]),
    prog_load: fn("bpf_prog_load", "int", ["int", s, s, p, "size_t", p]),
    obj_pin: fn("bpf_obj_pin", "int", ["int", s]),
    obj_get: fn("bpf_obj_get", "int", [s]),
    info_by_fd: fn("bpf_obj_get_info_by_fd", "int", ["int", p, p]),
    tc_hook_create: fn("bpf_tc_hook_create", "int", [p]),
    tc_hook_destroy: fn("bpf_tc_hook_destroy", "int", [p]),
    tc_attach: fn("bpf_tc_attach", "int", [p, p]),
    tc_detach: fn("bpf_tc_detach", "int", [p, p]),
    tc_query: fn("bpf_tc_query", "int", [p, p]),
    probe_map: fn("libbpf_probe_bpf_map_type", "int", ["int", p]),
    probe_prog: fn("libbpf_probe_bpf_prog_type", "int", ["int", p]),
    probe_helper: fn("libbpf_probe_bpf_helper", "int", ["int", "int", p]),
    map_type_str: fn("libbpf_bpf_map_type_str", s, ["int"]),
    prog_type_str: fn("libbpf_bpf_prog_type_str", s, ["int"]),
    strerror: fn("libbpf_strerror", "int", ["int", p, "size_t"]),
  };

  installPrintCallback(k, fn);

  cached = {
    version: `${major}.${minor}`,
    structs,
    bpf_object__open_mem: (buf, size, opts) => b.open_mem(buf, size, opts) || null,
    bpf_object__load: (obj) => b.obj_load(obj),
    bpf_object__close: (obj) => b.obj_close(obj),
    bpf_object__name: (obj) => b.obj_name(obj) ?? "",
    bpf_object__find_map_by_name: (obj, name) => b.find_map(obj, name) || null,
    bpf_object__find_program_by_name: (obj, name) => b.find_prog(obj, name) || null,
    bpf_object__next_map: (obj, prev) => b.next_map(obj, prev) || null,
    bpf_object__next_program: (obj, prev) => b.next_prog(obj, prev) || null,
    bpf_map__name: (m) => b.map_name(m) ?? "",
    bpf_map__fd: (m) => b.map_fd(m),
    bpf_map__type: (m) => b.map_type(m),
    bpf_map__key_size: (m) => b.map_key_size(m),
    bpf_map__value_size: (m) => b.map_value_size(m),
    bpf_map__max_entries: (m) => b.map_max_entries(m),
    bpf_map__map_flags: (m) => b.map_flags(m),
    bpf_map__is_internal: (m) => Boolean(b.map_is_internal(m)),
    bpf_map__set_max_entries: (m, n) => b.map_set_max_entries(m, n),
    bpf_map__set_type: (m, t) => b.map_set_type(m, t),
    bpf_map__pin: (m, path) => b.map_pin(m, path),
    bpf_map__unpin: (m, path) => b.map_unpin(m, path),
    bpf_map__reuse_fd: (m, fd) => b.map_reuse_fd(m, fd),
    bpf_map__initial_value: (m) => {
      const size = Buffer.alloc(8);
      const ptr = b.map_initial_value(m, size);
      if (!ptr) return null;
      const n = Number(size.readBigUInt64LE(0));
      // A copy: libbpf owns (and may free or remap) the memory behind the pointer.
      return n === 0 ? new Uint8Array(0) : new Uint8Array(k.view(ptr, n)).slice();
    },
    bpf_map__set_initial_value: (m, data, size) => b.map_set_initial_value(m, data, size),
    bpf_program__name: (pr) => b.prog_name(pr) ?? "",
    bpf_program__section_name: (pr) => b.prog_section(pr) ?? "",
    bpf_program__fd: (pr) => b.prog_fd(pr),
    bpf_program__type: (pr) => b.prog_type(pr),
    bpf_program__set_autoload: (pr, on) => b.prog_set_autoload(pr, on),
    bpf_map_lookup_elem: (fd, key, value) => b.lookup(fd, key, value),
    bpf_map_update_elem: (fd, key, value, flags) => b.update(fd, key, value, flags),
    bpf_map_delete_elem: (fd, key) => b.del(fd, key),
    bpf_map_get_next_key: (fd, key, next) => b.next_key(fd, key, next),
    bpf_map_lookup_batch: (fd, i, o, keys, values, count, opts) => b.lookup_batch(fd, i, o, keys, values, count, opts),
    bpf_prog_test_run_opts: (fd, opts) => b.test_run(fd, opts),
    bpf_map_create: (type, name, k, v, n, opts) => b.map_create(type, name, k, v, n, opts),
    bpf_prog_load: (type, name, license, insns, count, opts) => b.prog_load(type, name, license, insns, count, opts),
    bpf_obj_pin: (fd, path) => b.obj_pin(fd, path),
    bpf_obj_get: (path) => b.obj_get(path),
    bpf_obj_get_info_by_fd: (fd, info, len) => b.info_by_fd(fd, info, len),
    bpf_tc_hook_create: (hook) => b.tc_hook_create(hook),
    bpf_tc_hook_destroy: (hook) => b.tc_hook_destroy(hook),
    bpf_tc_attach: (hook, opts) => b.tc_attach(hook, opts),
    bpf_tc_detach: (hook, opts) => b.tc_detach(hook, opts),
    bpf_tc_query: (hook, opts) => b.tc_query(hook, opts),
    libbpf_probe_bpf_map_type: (t, o) => b.probe_map(t, o),
    libbpf_probe_bpf_prog_type: (t, o) => b.probe_prog(t, o),
    libbpf_probe_bpf_helper: (t, h, o) => b.probe_helper(t, h, o),
    libbpf_bpf_map_type_str: (t) => b.map_type_str(t) ?? null,
    libbpf_bpf_prog_type_str: (t) => b.prog_type_str(t) ?? null,
    libbpf_strerror: (err, buf, size) => b.strerror(err, buf, size),
    errno: () => k.errno(),
  };
  cached = instrumentSyscalls(cached, BPF_SYSCALL_OPERATIONS);
  return cached;
}

/**
 * The option structs, field for field with libbpf 1.1's headers. Anonymous
 * koffi types, so that a second evaluation of this module in the same process
 * (test isolation) cannot collide on type names. Unnamed C bitfield padding
 * appears as `_padN` members; trailing `size_t :0` only rounds the size up,
 * which koffi's alignment does too.
 */
function defineStructs(k: Koffi): LibbpfStructs {
  return {
    bpf_object_open_opts: k.struct({
      sz: "size_t",
      object_name: "void *",
      relaxed_maps: "bool",
      pin_root_path: "void *",
      _pad0: "uint32_t", // __u32 :32, the removed attach_prog_fd
      kconfig: "void *",
      btf_custom_path: "void *",
      kernel_log_buf: "void *",
      kernel_log_size: "size_t",
      kernel_log_level: "uint32_t",
    }),
    bpf_test_run_opts: k.struct({
      sz: "size_t",
      data_in: "void *",
      data_out: "void *",
      data_size_in: "uint32_t",
      data_size_out: "uint32_t",
      ctx_in: "void *",
      ctx_out: "void *",
      ctx_size_in: "uint32_t",
      ctx_size_out: "uint32_t",
      retval: "uint32_t",
      repeat: "int",
      duration: "uint32_t",
      flags: "uint32_t",
      cpu: "uint32_t",
      batch_size: "uint32_t",
    }),
    bpf_tc_hook: k.struct({
      sz: "size_t",
      ifindex: "int",
      attach_point: "int",
      parent: "uint32_t",
    }),
    bpf_tc_opts: k.struct({
      sz: "size_t",
      prog_fd: "int",
      flags: "uint32_t",
      prog_id: "uint32_t",
      handle: "uint32_t",
      priority: "uint32_t",
    }),
    bpf_map_batch_opts: k.struct({
      sz: "size_t",
      elem_flags: "uint64_t",
      flags: "uint64_t",
    }),
    bpf_map_info: k.struct({
      type: "uint32_t",
      id: "uint32_t",
      key_size: "uint32_t",
      value_size: "uint32_t",
      max_entries: "uint32_t",
      map_flags: "uint32_t",
      name: k.array("uint8_t", 16),
      ifindex: "uint32_t",
      btf_vmlinux_value_type_id: "uint32_t",
      netns_dev: "uint64_t",
      netns_ino: "uint64_t",
      btf_id: "uint32_t",
      btf_key_type_id: "uint32_t",
      btf_value_type_id: "uint32_t",
      _pad0: "uint32_t",
      map_extra: "uint64_t",
    }),
  };
}

/** A zeroed struct of `type` with `sz` set (libbpf's OPTS convention) and the given fields. */
export function encodeStruct(type: TypeObject, fields: Record<string, unknown>): Buffer {
  const k = koffi();
  const buf = Buffer.alloc(type.size);
  const withSz = type.members && "sz" in type.members ? { sz: type.size, ...fields } : fields;
  k.encode(buf, type, withSz);
  return buf;
}

/** Reads a struct written by native code back into a plain object. */
export function decodeStruct(buf: Buffer, type: TypeObject): Record<string, unknown> {
  return koffi().decode(buf, type) as Record<string, unknown>;
}

/** "ENOENT (No such file or directory)" for -2; uses libbpf's text for its own codes. */
export function describeErrno(err: number): string {
  const n = Math.abs(err);
  let text = "";
  if (cached) {
    const buf = Buffer.alloc(256);
    cached.libbpf_strerror(n, buf, buf.length);
    const end = buf.indexOf(0);
    text = buf.toString("utf8", 0, end < 0 ? buf.length : end);
  }
  const name = errnoName(n);
  return text && !text.startsWith("Unknown") ? `${name} (${text})` : name;
}

/**
 * Throws BpfSyscallError("<action>: EXXX (text)") when `ret` is a negative
 * errno; returns `ret` otherwise.
 */
export function check(ret: number, action: string, log = ""): number {
  if (ret < 0) throw new BpfSyscallError(`${action}: ${describeErrno(ret)}`, ret, log);
  return ret;
}

/**
 * x86-64 and arm64 pass va_list to the print callback as a pointer to a small
 * struct; copying those bytes is exactly what va_copy does there, which lets
 * us format twice when the first buffer was too small. Elsewhere messages are
 * cut at the scratch size.
 */
const VA_LIST_SIZE: Record<string, number> = { x64: 24, arm64: 32 };

function installPrintCallback(k: Koffi, fn: (name: string, ret: unknown, args: unknown[]) => NativeFunction): void {
  const c = libc();
  const scratch = Buffer.alloc(16 * 1024);
  const vaSize = VA_LIST_SIZE[process.arch] ?? 0;

  const format = (fmt: bigint, ap: bigint): string => {
    const saved = vaSize ? Buffer.from(new Uint8Array(k.view(ap, vaSize))) : undefined;
    const n = c.vsnprintf(scratch, scratch.length, fmt, ap);
    if (n < 0) return "";
    if (n < scratch.length) return scratch.toString("utf8", 0, n);
    if (!saved) return scratch.toString("utf8", 0, scratch.length - 1);
    // The verifier log arrives as one "%s" of up to megabytes: format again
    // into a buffer of the size vsnprintf asked for.
    new Uint8Array(k.view(ap, vaSize)).set(saved);
    const big = Buffer.alloc(n + 1);
    const m = c.vsnprintf(big, big.length, fmt, ap);
    return big.toString("utf8", 0, Math.max(0, Math.min(m, n)));
  };

  const proto = k.proto("int", ["int", "void *", "void *"]);
  const callback = k.register((level: number, fmt: bigint, ap: bigint): number => {
    try {
      const name = LIBBPF_LEVELS[level] ?? "debug";
      if (!libbpfLevelWanted(name)) return 0;
      emitLibbpfMessage(name, format(fmt, ap));
    } catch {
      // A throw cannot cross into C; losing one log line is the lesser harm.
    }
    return 0;
  }, k.pointer(proto));
  // Registered for the life of the process: libbpf keeps the pointer globally.
  fn("libbpf_set_print", "void *", [k.pointer(proto)])(callback);
}
