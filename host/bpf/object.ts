/**
 * A BPF ELF object loaded into the kernel: its maps and programs, as fds this
 * object owns until close(). libbpf does the opening, relocation and map
 * creation; this class adds what the datapath needs around it: sizing maps
 * from configuration, keeping maps across restarts through pins, and turning
 * failures into errors that say which program or map and why.
 */
import { existsSync, renameSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { InvalidInputError, MembraneError } from "../errors.js";
import { ensurePinDir } from "./bpffs.js";
import { BpfLoadError, BpfSyscallError, BpfVerifierError } from "./errors.js";
import { captureLibbpfLog, type LibbpfLog } from "./libbpf-log.js";
import { check, describeErrno, encodeStruct, libbpf, type Ptr } from "./libbpf.js";
import { libc } from "../sys/libc.js";
import { BpfMap, mapInfoByFd, mapTypeName, type FdOwner } from "./map.js";
import { BpfProgram } from "./program.js";

export interface BpfObjectLoadOptions {
  /** Object name, used in kernel object names and in every message. */
  name: string;
  /** max_entries overrides by map name, applied before the maps are created. */
  mapSizes?: Record<string, number>;
  /**
   * Map type overrides by map name, as libbpf names types ("hash",
   * "lru_hash", ...) or enum bpf_map_type numbers; e.g. conntrack as a plain
   * hash when a full table should refuse new flows instead of evicting.
   */
  mapTypes?: Record<string, string | number>;
  /**
   * Pin every (non-internal) map at `<pinDir>/<map name>` after loading. The
   * directory is created, and bpffs mounted at /sys/fs/bpf if needed.
   */
  pinDir?: string;
  /**
   * With pinDir: use maps already pinned there instead of creating new ones,
   * so their contents survive a reload. A pinned map whose definition differs
   * (type, key/value size, max_entries, flags) is an error. Without this,
   * pins are replaced by the new maps.
   */
  reusePinned?: boolean;
  /**
   * Bytes written into global variables' sections before load, e.g. the
   * `volatile const` endpoint values of a template in ".rodata". Applied to
   * libbpf's copy of the section's initial contents (bpf_map__set_initial_value),
   * so the kernel map is created, filled and (for .rodata) frozen with them
   * and the verifier sees them as constants. Offsets come from the object's
   * BTF (readBpfSpec's globals).
   */
  globals?: readonly GlobalPatch[];
  /**
   * Create (or reuse) the maps and load no program: for a process that only
   * holds the maps open. No verifier run, so no kernel feature a program
   * needs (bpf_loop, ...) is required, and it takes a fraction of a load.
   */
  mapsOnly?: boolean;
  /**
   * Load only these programs (by C function name); the others stay out of
   * the kernel and off the verifier. E.g. an endpoint instance loads its two
   * small per-endpoint programs and not the node-wide stages compiled into
   * the same object. Unset: every program.
   */
  programs?: readonly string[];
  /**
   * With pinDir: pin (or reuse) these maps at their own absolute paths instead
   * of `<pinDir>/<map name>`, e.g. a template's prog array under a name that
   * carries the template's key.
   */
  pinPaths?: Readonly<Record<string, string>>;
}

/** `bytes` at `offset` in the global data section `section` (".rodata", ".data", ".rodata.foo"). */
export interface GlobalPatch {
  section: string;
  offset: number;
  bytes: Uint8Array;
}

const ELF_MAGIC = [0x7f, 0x45, 0x4c, 0x46];

/** Frees objects that were dropped without close(). close() remains the contract. */
const leaked = new FinalizationRegistry<{ ptr: Ptr; closed: boolean }>((state) => {
  if (!state.closed) {
    state.closed = true;
    libbpf().bpf_object__close(state.ptr);
  }
});

export class BpfObject implements FdOwner {
  readonly name: string;
  readonly maps: ReadonlyMap<string, BpfMap>;
  readonly programs: ReadonlyMap<string, BpfProgram>;
  /** Maps taken over from pins (reusePinned) rather than created. */
  readonly reusedMaps: ReadonlySet<string>;

  #state: { ptr: Ptr; closed: boolean };

  private constructor(name: string, ptr: Ptr, reused: Set<string>) {
    this.name = name;
    this.#state = { ptr, closed: false };
    this.reusedMaps = reused;
    const lib = libbpf();
    const maps = new Map<string, BpfMap>();
    for (let m = lib.bpf_object__next_map(ptr, null); m !== null; m = lib.bpf_object__next_map(ptr, m)) {
      const info = {
        name: lib.bpf_map__name(m),
        type: lib.bpf_map__type(m),
        keySize: lib.bpf_map__key_size(m),
        valueSize: lib.bpf_map__value_size(m),
        maxEntries: lib.bpf_map__max_entries(m),
        flags: lib.bpf_map__map_flags(m),
        internal: lib.bpf_map__is_internal(m),
      };
      maps.set(info.name, new BpfMap(info, lib.bpf_map__fd(m), this, m));
    }
    const programs = new Map<string, BpfProgram>();
    for (let p = lib.bpf_object__next_program(ptr, null); p !== null; p = lib.bpf_object__next_program(ptr, p)) {
      const prog = new BpfProgram(p, this);
      programs.set(prog.name, prog);
    }
    this.maps = maps;
    this.programs = programs;
    leaked.register(this, this.#state, this);
  }

  get closed(): boolean {
    return this.#state.closed;
  }

  get description(): string {
    return `BPF object ${this.name}`;
  }

  /** The map called `name`; throws naming the maps that do exist. */
  map(name: string): BpfMap {
    const m = this.maps.get(name);
    if (!m) throw new InvalidInputError(`BPF object ${this.name} has no map ${name} (maps: ${[...this.maps.keys()].join(", ")})`);
    return m;
  }

  /** The program called `name` (the C function name). */
  program(name: string): BpfProgram {
    const p = this.programs.get(name);
    if (!p) {
      throw new InvalidInputError(`BPF object ${this.name} has no program ${name} (programs: ${[...this.programs.keys()].join(", ")})`);
    }
    return p;
  }

  /** Closes every map and program fd of the object. Pins stay. Idempotent. */
  close(): void {
    if (this.#state.closed) return;
    this.#state.closed = true;
    leaked.unregister(this);
    libbpf().bpf_object__close(this.#state.ptr);
  }

  /**
   * Opens `elf` and applies map overrides and globals as load() would, then
   * closes it without loading: checks those inputs against the object, and is
   * the whole userspace part of specialising a template (what a benchmark
   * compares with a compile).
   */
  static specialiseOnly(elf: Uint8Array, opts: BpfObjectLoadOptions): void {
    validate(elf, opts);
    const lib = libbpf();
    captureLibbpfLog((log) => {
      const image = Buffer.from(elf);
      const openOpts = encodeStruct(lib.structs.bpf_object_open_opts, { object_name: Buffer.from(`${opts.name}\0`) });
      const ptr = lib.bpf_object__open_mem(image, image.length, openOpts);
      if (ptr === null) {
        const err = lib.errno() || 22;
        throw new BpfLoadError(`open BPF object ${opts.name}: ${describeErrno(err)}${summary(log)}`, err, log.text());
      }
      try {
        applyMapOverrides(ptr, opts, opts.name);
        applyGlobals(ptr, opts.globals ?? [], opts.name);
      } finally {
        lib.bpf_object__close(ptr);
      }
    });
  }

  /**
   * Opens `elf` with libbpf, applies map sizes and pins, and loads it into the
   * kernel. A program the verifier rejects throws BpfVerifierError; other
   * failures throw BpfLoadError (with libbpf's log) or BpfSyscallError.
   */
  static load(elf: Uint8Array, opts: BpfObjectLoadOptions): BpfObject {
    validate(elf, opts);
    const { name } = opts;
    const action = `load BPF object ${name}`;
    const lib = libbpf();

    return captureLibbpfLog((log) => {
      // libbpf reads the ELF during open only; the Buffer is an off-heap copy.
      const image = Buffer.from(elf);
      const objectName = Buffer.from(`${name}\0`);
      const openOpts = encodeStruct(lib.structs.bpf_object_open_opts, { object_name: objectName });
      const ptr = lib.bpf_object__open_mem(image, image.length, openOpts);
      if (ptr === null) {
        const err = lib.errno() || 22;
        throw new BpfLoadError(`${action}: open: ${describeErrno(err)}${summary(log)}`, err, log.text());
      }

      const reused = new Set<string>();
      let obj: BpfObject | undefined;
      try {
        applyMapOverrides(ptr, opts, name);
        applyGlobals(ptr, opts.globals ?? [], name);
        selectPrograms(ptr, opts, name);
        // After validation (bad input changes nothing), before creating maps.
        const pinDir = opts.pinDir !== undefined ? ensurePinDir(opts.pinDir) : undefined;
        if (pinDir !== undefined && opts.reusePinned) reusePins(ptr, pinDir, name, reused, opts.pinPaths);

        const ret = lib.bpf_object__load(ptr);
        if (ret < 0) throw loadFailure(action, ret, log);

        obj = new BpfObject(name, ptr, reused);
        if (pinDir !== undefined) pinAll(obj, pinDir, reused, opts.pinPaths);
        return obj;
      } catch (err) {
        // Not handed out: free everything here.
        if (obj) obj.close();
        else lib.bpf_object__close(ptr);
        throw err;
      }
    });
  }
}

function validate(elf: Uint8Array, opts: BpfObjectLoadOptions): void {
  if (!opts || typeof opts.name !== "string" || !/^[A-Za-z0-9_.-]{1,64}$/.test(opts.name)) {
    throw new InvalidInputError(`BPF object name must be 1-64 characters of A-Z a-z 0-9 _ . -, got ${JSON.stringify(opts?.name)}`);
  }
  if (!(elf instanceof Uint8Array) || elf.length < 4 || ELF_MAGIC.some((b, i) => elf[i] !== b)) {
    throw new InvalidInputError(`load BPF object ${opts.name}: not an ELF file`);
  }
  for (const [map, size] of Object.entries(opts.mapSizes ?? {})) {
    if (!Number.isInteger(size) || size < 1 || size > 0xffff_ffff) {
      throw new InvalidInputError(`load BPF object ${opts.name}: size of map ${map} must be a positive integer, got ${size}`);
    }
  }
  if (opts.pinDir !== undefined && !opts.pinDir.startsWith("/")) {
    throw new InvalidInputError(`load BPF object ${opts.name}: pinDir must be an absolute path, got ${JSON.stringify(opts.pinDir)}`);
  }
  if (opts.reusePinned && opts.pinDir === undefined) {
    throw new InvalidInputError(`load BPF object ${opts.name}: reusePinned needs pinDir`);
  }
  for (const [map, path] of Object.entries(opts.pinPaths ?? {})) {
    if (opts.pinDir === undefined) throw new InvalidInputError(`load BPF object ${opts.name}: pinPaths needs pinDir`);
    if (typeof path !== "string" || !path.startsWith("/") || (path.split("/").pop() ?? "").includes(".")) {
      throw new InvalidInputError(`load BPF object ${opts.name}: pinPaths.${map} must be an absolute path without '.' (bpffs refuses it), got ${JSON.stringify(path)}`);
    }
  }
  if (opts.programs !== undefined && (!Array.isArray(opts.programs) || opts.programs.some((p) => typeof p !== "string"))) {
    throw new InvalidInputError(`load BPF object ${opts.name}: programs must be an array of program names`);
  }
}

/** mapsOnly and programs: switches autoload off for every program not asked for; an unknown name is refused. */
function selectPrograms(ptr: Ptr, opts: BpfObjectLoadOptions, objName: string): void {
  if (!opts.mapsOnly && opts.programs === undefined) return;
  const lib = libbpf();
  const all: Array<[Ptr, string]> = [];
  for (let p = lib.bpf_object__next_program(ptr, null); p !== null; p = lib.bpf_object__next_program(ptr, p)) all.push([p, lib.bpf_program__name(p)]);
  const wanted = new Set(opts.mapsOnly ? [] : opts.programs);
  for (const w of wanted) {
    if (!all.some(([, n]) => n === w)) {
      throw new InvalidInputError(`load BPF object ${objName}: programs names unknown program ${w} (programs: ${all.map(([, n]) => n).join(", ")})`);
    }
  }
  for (const [p, n] of all) if (!wanted.has(n)) lib.bpf_program__set_autoload(p, false);
}

function mapsOf(ptr: Ptr): Ptr[] {
  const lib = libbpf();
  const out: Ptr[] = [];
  for (let m = lib.bpf_object__next_map(ptr, null); m !== null; m = lib.bpf_object__next_map(ptr, m)) out.push(m);
  return out;
}

/** enum bpf_map_type number for a libbpf type name ("lru_hash"), or undefined. */
function mapTypeByName(name: string): number | undefined {
  // libbpf knows the names; the enum is dense and short, so ask for each value.
  for (let t = 1; t < 64; t++) {
    if (libbpf().libbpf_bpf_map_type_str(t) === name) return t;
  }
  return undefined;
}

/** Applies mapTypes and mapSizes. Checks every name and value first, so a typo changes nothing. */
function applyMapOverrides(ptr: Ptr, opts: BpfObjectLoadOptions, objName: string): void {
  const lib = libbpf();
  const action = `load BPF object ${objName}`;
  const find = (mapName: string, option: string): Ptr => {
    const m = lib.bpf_object__find_map_by_name(ptr, mapName);
    if (m !== null) return m;
    const names = mapsOf(ptr).map((x) => lib.bpf_map__name(x));
    throw new InvalidInputError(`${action}: ${option} names unknown map ${mapName} (maps: ${names.join(", ")})`);
  };
  const types: Array<[Ptr, number, string]> = [];
  for (const [mapName, type] of Object.entries(opts.mapTypes ?? {})) {
    const m = find(mapName, "mapTypes");
    const value = typeof type === "number" ? type : mapTypeByName(type);
    if (value === undefined || !Number.isInteger(value) || value < 1 || lib.libbpf_bpf_map_type_str(value) === null) {
      throw new InvalidInputError(`${action}: mapTypes gives map ${mapName} unknown type ${JSON.stringify(type)} (e.g. "hash", "lru_hash")`);
    }
    types.push([m, value, mapName]);
  }
  const sizes: Array<[Ptr, number, string]> = [];
  for (const [mapName, size] of Object.entries(opts.mapSizes ?? {})) sizes.push([find(mapName, "mapSizes"), size, mapName]);

  for (const [m, type, mapName] of types) {
    check(lib.bpf_map__set_type(m, type), `${action}: set type of map ${mapName} to ${mapTypeName(type)}`);
  }
  for (const [m, size, mapName] of sizes) {
    check(lib.bpf_map__set_max_entries(m, size), `${action}: set max_entries of map ${mapName} to ${size}`);
  }
}

/**
 * The internal map libbpf made for a data section: it names them with a prefix
 * of the object name and the section name ("membrane.rodata", or just
 * ".rodata.foo" for custom sections), so match on the section's suffix.
 */
function sectionMap(ptr: Ptr, section: string): Ptr | undefined {
  const lib = libbpf();
  const candidates = mapsOf(ptr).filter((m) => lib.bpf_map__is_internal(m) && lib.bpf_map__name(m).endsWith(section));
  return candidates.find((m) => lib.bpf_map__name(m) === section) ?? (candidates.length === 1 ? candidates[0] : undefined);
}

/** Writes the global patches into the sections' initial contents; all checked before any is applied. */
function applyGlobals(ptr: Ptr, patches: readonly GlobalPatch[], objName: string): void {
  if (patches.length === 0) return;
  const lib = libbpf();
  const action = `load BPF object ${objName}`;
  const images = new Map<string, { map: Ptr; bytes: Uint8Array }>();
  for (const patch of patches) {
    let image = images.get(patch.section);
    if (!image) {
      const map = sectionMap(ptr, patch.section);
      const bytes = map ? lib.bpf_map__initial_value(map) : null;
      if (!map || !bytes) throw new InvalidInputError(`${action}: the object has no data section ${patch.section} to set globals in`);
      image = { map, bytes };
      images.set(patch.section, image);
    }
    if (!Number.isInteger(patch.offset) || patch.offset < 0 || patch.offset + patch.bytes.length > image.bytes.length) {
      throw new InvalidInputError(
        `${action}: a global at ${patch.section}+${patch.offset} (${patch.bytes.length} bytes) lies outside the ${image.bytes.length}-byte section`,
      );
    }
    image.bytes.set(patch.bytes, patch.offset);
  }
  for (const [section, { map, bytes }] of images) {
    check(lib.bpf_map__set_initial_value(map, bytes, bytes.length), `${action}: set the initial contents of ${section}`);
  }
}

/** Maps that can be pinned: not libbpf's internal .data/.rodata/.bss/.kconfig maps. */
function pinnable(m: Ptr): boolean {
  return !libbpf().bpf_map__is_internal(m);
}

/**
 * Points libbpf at pinned maps instead of creating them, after checking that
 * each pinned map has the definition this object expects: reusing a map of
 * another shape would corrupt both sides.
 */
function reusePins(ptr: Ptr, dir: string, objName: string, reused: Set<string>, pinPaths: Readonly<Record<string, string>> = {}): void {
  const lib = libbpf();
  for (const m of mapsOf(ptr)) {
    if (!pinnable(m)) continue;
    const mapName = lib.bpf_map__name(m);
    const path = pinPaths[mapName] ?? join(dir, mapName);
    if (!existsSync(path)) continue;
    const fd = lib.bpf_obj_get(path);
    if (fd < 0) throw new BpfSyscallError(`load BPF object ${objName}: open pinned map ${path}: ${describeErrno(fd)}`, fd);
    try {
      const have = mapInfoByFd(fd, `load BPF object ${objName}: reuse pinned map ${path}`);
      const want = {
        type: lib.bpf_map__type(m),
        keySize: lib.bpf_map__key_size(m),
        valueSize: lib.bpf_map__value_size(m),
        maxEntries: lib.bpf_map__max_entries(m),
        flags: lib.bpf_map__map_flags(m),
      };
      const diffs: string[] = [];
      if (have.type !== want.type) diffs.push(`type ${mapTypeName(have.type)} != ${mapTypeName(want.type)}`);
      if (have.keySize !== want.keySize) diffs.push(`key_size ${have.keySize} != ${want.keySize}`);
      if (have.valueSize !== want.valueSize) diffs.push(`value_size ${have.valueSize} != ${want.valueSize}`);
      if (have.maxEntries !== want.maxEntries) diffs.push(`max_entries ${have.maxEntries} != ${want.maxEntries}`);
      if (have.flags !== want.flags) diffs.push(`map_flags 0x${have.flags.toString(16)} != 0x${want.flags.toString(16)}`);
      if (diffs.length > 0) {
        throw new MembraneError(
          "BPF_MAP_INCOMPATIBLE",
          `load BPF object ${objName}: pinned map ${path} does not match map ${mapName} (pinned vs wanted: ${diffs.join(", ")}); ` +
            `remove the pin to start with an empty map`,
        );
      }
      // libbpf dup()s the fd; ours is closed below either way.
      check(lib.bpf_map__reuse_fd(m, fd), `load BPF object ${objName}: reuse pinned map ${path}`);
      reused.add(mapName);
    } finally {
      libc().close(fd);
    }
  }
}

/**
 * Pins the maps that were created by this load. An existing pin is replaced
 * atomically (pin under a temporary name, then rename over it), so readers of
 * the path never find it missing.
 */
function pinAll(obj: BpfObject, dir: string, reused: Set<string>, pinPaths: Readonly<Record<string, string>> = {}): void {
  const lib = libbpf();
  for (const [mapName, map] of obj.maps) {
    if (map.internal) continue;
    const path = pinPaths[mapName] ?? join(dir, mapName);
    if (reused.has(mapName)) {
      map.markPinned(path);
      continue;
    }
    // bpffs refuses names containing '.', hence no "flows.tmp".
    const tmp = `${path}__replacing_${process.pid}`;
    check(lib.bpf_obj_pin(map.fd, tmp), `load BPF object ${obj.name}: pin map ${mapName} at ${tmp}`);
    try {
      renameSync(tmp, path);
    } catch (err) {
      try {
        unlinkSync(tmp);
      } catch {
        // already gone
      }
      throw new MembraneError("BPF_SYSCALL", `load BPF object ${obj.name}: pin map ${mapName} at ${path}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    map.markPinned(path);
  }
}

/** `prog 'name': -- BEGIN PROG LOAD LOG --\n...-- END PROG LOAD LOG --` as libbpf prints it. */
const PROG_LOG = /prog '([^']+)': -- BEGIN PROG LOAD LOG --\n([\s\S]*?)-- END PROG LOAD LOG --/;
const PROG_FAILED = /prog '([^']+)': BPF program load failed/;

/** Splits a load failure into "the verifier said no" and everything else. */
function loadFailure(action: string, ret: number, log: LibbpfLog): MembraneError {
  const text = log.text();
  const verifier = PROG_LOG.exec(text);
  if (verifier) {
    const [, program, vlog] = verifier as unknown as [string, string, string];
    return new BpfVerifierError(`${action}: program ${program} rejected by the verifier: ${verifierReason(vlog)}`, program, vlog);
  }
  const failed = PROG_FAILED.exec(text);
  const what = failed ? `program ${failed[1]}: ` : "";
  return new BpfLoadError(`${action}: ${what}${describeErrno(ret)}${summary(log)}`, ret, text);
}

/**
 * The verifier's last words: the final lines before its statistics, which is
 * where it says what is wrong ("R2 offset is outside of the packet").
 */
export function verifierReason(vlog: string): string {
  const lines = vlog
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !/^(processed \d+ insns|verification time|stack depth|max_states_per_insn)/.test(l));
  const tail = lines.slice(-2).filter((l) => !/^\d+: /.test(l) || lines.length <= 1);
  return tail.length > 0 ? tail.join("; ") : "see the log property for the verifier output";
}

/** libbpf's warnings as one clause, for messages: "; libbpf: ...". */
function summary(log: LibbpfLog): string {
  const warnings = log
    .text("warn")
    .split("\n")
    .map((l) => l.replace(/^libbpf: /, "").trim())
    .filter((l) => l !== "");
  if (warnings.length === 0) return "";
  return ` (libbpf: ${warnings.slice(0, 3).join("; ")})`;
}
