/**
 * A compiled template and its instantiation. The template is the object clang
 * produced once for a key; instantiating it for an endpoint writes the
 * endpoint's constants into libbpf's copy of .rodata after open and before
 * load (BpfObjectLoadOptions.globals), so the kernel creates the frozen
 * .rodata map with them and the verifier prunes on them. The ELF bytes are
 * never modified: see docs/templating.md for why.
 */
import type { ResolvedOptions } from "../../config.js";
import { BpfObject, type BpfObjectLoadOptions, type GlobalPatch } from "../../bpf/object.js";
import { readBpfSpec } from "../../bpf/elf/spec.js";
import { wrap } from "../../errors.js";
import { HELPERS, requireHelper } from "../../bpf/helper-probe.js";
import { loadConfiguredObject } from "../load.js";
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

export type InstantiateOptions = Omit<BpfObjectLoadOptions, "mapSizes" | "mapTypes" | "globals" | "name"> & { name?: string };

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
   * Loads the template specialised for `values`, with the maps sized and
   * configured from `resolved` as every kernel object is (host/kernel/load.ts).
   */
  instantiate(values: EndpointValues, resolved: ResolvedOptions, opts: InstantiateOptions = {}): BpfObject {
    const globals = this.patches(values);
    const name = opts.name ?? `${this.meta.program}_${values.id}`;
    // Said plainly before the verifier would say "unknown func bpf_loop#181".
    if (this.meta.shape.nat) requireHelper(`instantiate template ${this.key.slice(0, 12)} for endpoint ${values.id}`, HELPERS.loop);
    try {
      return loadConfiguredObject(this.elf, resolved, { ...opts, name, globals });
    } catch (err) {
      throw wrap(`instantiate template ${this.key.slice(0, 12)} for endpoint ${values.id}`, err);
    }
  }

  /** Everything instantiate does short of the kernel: libbpf open and .rodata written, then closed. */
  specialise(values: EndpointValues): void {
    BpfObject.specialiseOnly(this.elf, { name: `${this.meta.program}_${values.id}`, globals: this.patches(values) });
  }
}
