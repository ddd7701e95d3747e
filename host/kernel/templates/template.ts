/**
 * A compiled template and its instantiation. The template is the object clang
 * produced once for a key; instantiating it for an endpoint writes the
 * endpoint's constants into libbpf's copy of .rodata after open and before
 * load (BpfObjectLoadOptions.globals), so the kernel creates the frozen
 * .rodata map with them and the verifier prunes on them. The ELF bytes are
 * never modified: see docs/templating.md for why.
 *
 * The template is split (bpf/lib/lxc_calls.h): an instance on the node's
 * pinned maps loads only the two small per-endpoint programs; the datapath
 * itself is the template's two node-wide stages, loaded once per node and
 * process (installStages) into the template's own pinned prog array.
 */
import type { ResolvedOptions } from "../../config.js";
import { BpfObject, type BpfObjectLoadOptions, type GlobalPatch } from "../../bpf/object.js";
import { readBpfSpec } from "../../bpf/elf/spec.js";
import { InvalidInputError, wrap } from "../../errors.js";
import { HELPERS, requireHelper } from "../../bpf/helper-probe.js";
import { loadConfiguredObject } from "../load.js";
import { LXC_CALLS_MAP, LXC_ENDPOINT_PROGRAMS, LXC_STAGES, lxcCallsPin, lxcStageIds } from "../lxc-stages.js";
import { endpointLayout, endpointPatches, type EndpointLayout, type EndpointValues } from "./endpoint-values.js";
import type { TemplateShape } from "./shape.js";
import type { SourceDigest } from "./key.js";

/** meta.json of a template directory: what was compiled, from what, and the object's checksum. */
export interface TemplateMeta {
  key: string;
  program: string;
  shape: TemplateShape;
  sources: SourceDigest[];
  compiler: string;
  flags: string[];
  defines: string[];
  /** sha256 of the object file; a mismatch means the entry is corrupt. */
  objectSha256: string;
  objectBytes: number;
  compiledAt: string;
  /** Wall-clock milliseconds the compile took. */
  compileMs: number;
}

export type InstantiateOptions = Omit<BpfObjectLoadOptions, "mapSizes" | "mapTypes" | "globals" | "name" | "programs" | "pinPaths"> & { name?: string };

/** What installing a template's node-wide stages did. */
export interface StageInstall {
  /** Where the template's prog array is pinned. */
  pin: string;
  /** The stage programs now in its slots (LXC_STAGES order). */
  progIds: number[];
  /** Wall-clock milliseconds: open, verifier, slot updates. */
  ms: number;
}

export class Template {
  readonly layout: EndpointLayout;

  constructor(readonly meta: TemplateMeta, readonly dir: string, readonly objectPath: string, readonly elf: Uint8Array) {
    this.layout = endpointLayout(readBpfSpec(elf, meta.program), `template ${meta.key.slice(0, 12)} (${objectPath})`);
  }

  get key(): string {
    return this.meta.key;
  }

  /** The .rodata patches for `values` (validated). */
  patches(values: EndpointValues): GlobalPatch[] {
    return endpointPatches(this.layout, values);
  }

  /**
   * Loads the template's node-wide stages against the maps pinned in `pinDir`
   * and puts them in the template's pinned prog array, replacing what a
   * previous agent put there one slot at a time (each update atomic, so
   * endpoints already attached never tail-call an empty slot). Once per node
   * and process: instantiate() calls it for a pin dir it has not seen.
   */
  installStages(resolved: ResolvedOptions, pinDir: string): StageInstall {
    const what = `install the stages of template ${this.key.slice(0, 12)}`;
    if (this.meta.shape.nat) requireHelper(what, HELPERS.loop);
    const pin = lxcCallsPin(pinDir, this.key);
    const started = performance.now();
    let object: BpfObject;
    try {
      object = loadConfiguredObject(this.elf, resolved, {
        name: `stages_${this.key.slice(0, 12)}`,
        pinDir,
        reusePinned: true,
        programs: LXC_STAGES.map((s) => s.program),
        pinPaths: { [LXC_CALLS_MAP]: pin },
      });
    } catch (err) {
      throw wrap(what, err);
    }
    try {
      const progIds = lxcStageIds(object);
      this.#stagesIn.add(pinDir);
      return { pin, progIds, ms: performance.now() - started };
    } finally {
      // The pinned array holds the stages now; this object's fds are not needed.
      object.close();
    }
  }

  /** Pin dirs whose prog array this process filled (installStages). */
  readonly #stagesIn = new Set<string>();

  /**
   * Loads the template specialised for `values`, with the maps sized and
   * configured from `resolved` as every kernel object is (host/kernel/load.ts).
   *
   * With `pinDir` (the node's maps, reused): the two per-endpoint programs
   * only, tail-calling the stages in the template's pinned array (installed
   * first if this process has not yet). Without: the whole object, its stages
   * in its own array (a self-contained instance, e.g. for test runs).
   */
  instantiate(values: EndpointValues, resolved: ResolvedOptions, opts: InstantiateOptions = {}): BpfObject {
    const globals = this.patches(values);
    const name = opts.name ?? `${this.meta.program}_${values.id}`;
    const what = `instantiate template ${this.key.slice(0, 12)} for endpoint ${values.id}`;
    if (opts.pinDir !== undefined && !opts.reusePinned) {
      // New maps would replace the node's pins, the template's prog array among them, under every other endpoint.
      throw new InvalidInputError(`${what}: an instance on pinned maps must reuse them (reusePinned)`);
    }
    if (opts.pinDir === undefined || opts.mapsOnly) {
      // Said plainly before the verifier would say "unknown func bpf_loop#181".
      if (this.meta.shape.nat && !opts.mapsOnly) requireHelper(what, HELPERS.loop);
      try {
        return loadConfiguredObject(this.elf, resolved, { ...opts, name, globals });
      } catch (err) {
        throw wrap(what, err);
      }
    }
    if (!this.#stagesIn.has(opts.pinDir)) this.installStages(resolved, opts.pinDir);
    try {
      return loadConfiguredObject(this.elf, resolved, {
        ...opts,
        name,
        globals,
        programs: LXC_ENDPOINT_PROGRAMS,
        pinPaths: { [LXC_CALLS_MAP]: lxcCallsPin(opts.pinDir, this.key) },
      });
    } catch (err) {
      throw wrap(what, err);
    }
  }

  /** Everything instantiate does short of the kernel: libbpf open and .rodata written, then closed. */
  specialise(values: EndpointValues): void {
    BpfObject.specialiseOnly(this.elf, { name: `${this.meta.program}_${values.id}`, globals: this.patches(values) });
  }
}
