/**
 * Loading a datapath object the one way every kernel user does it (test runs,
 * attached programs, benchmarks): maps sized and typed from the same options
 * as the Wasm tables, then the datapath, LB and NAT configuration written
 * before the first packet can run; a bpf_lxc's stages go into its prog array
 * (lxc-stages.ts) when they were loaded. A failure closes the object.
 */
import type { ResolvedOptions } from "../config.js";
import { encodeConfig } from "../config.js";
import { BpfObject, type BpfObjectLoadOptions } from "../bpf/object.js";
import { configureKernelLb } from "./lb-tables.js";
import { configureKernelNat } from "./nat-tables.js";
import { kernelMapSizes, kernelMapTypes } from "./maps.js";
import { installLxcStages } from "./lxc-stages.js";

export function loadConfiguredObject(elf: Uint8Array, resolved: ResolvedOptions, opts: Omit<BpfObjectLoadOptions, "mapSizes" | "mapTypes">): BpfObject {
  const object = BpfObject.load(elf, { ...opts, mapSizes: kernelMapSizes(resolved), mapTypes: kernelMapTypes(resolved) });
  try {
    object.map("config").update(new Uint8Array(4), encodeConfig(resolved));
    configureKernelLb(object, resolved.lb);
    configureKernelNat(object, resolved);
    // A bpf_lxc loaded with its node-wide stages (whole, or the stages alone) puts them in its prog array.
    installLxcStages(object);
    return object;
  } catch (err) {
    object.close();
    throw err;
  }
}

/** Sets the datapath clock map (seconds; 0 means the kernel's monotonic clock). */
export function setKernelClock(object: BpfObject, now: number): void {
  const value = new Uint8Array(4);
  new DataView(value.buffer).setUint32(0, now, true);
  object.map("clock").update(new Uint8Array(4), value);
}
