/**
 * What every kernel-side benchmark needs: why the kernel rows cannot run here
 * (if they cannot), bpf_test.o loaded and configured as KernelDatapath does it
 * with the bench's clock, and frames in the Ethernet form test runs take.
 */
import { existsSync, readFileSync } from "node:fs";
import type { ResolvedOptions } from "../host/config.js";
import type { BpfObject } from "../host/bpf/object.js";
import { loadConfiguredObject, setKernelClock } from "../host/kernel/load.js";
import { bpfObjectPath } from "../host/tools/build-bpf.js";
import type { Family } from "./flows.js";

const ETH_HLEN = 14;

/** Why the kernel rows cannot run here, or undefined when they can. */
export function kernelUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "not running as root (loading BPF programs needs root)";
  const obj = bpfObjectPath("bpf_test");
  if (!existsSync(obj)) return `${obj} is missing (install clang and libbpf-dev, then npm run build)`;
  return undefined;
}

/** bpf_test.o sized and configured for `resolved`, its clock at `now`. */
export function loadBenchKernel(name: string, resolved: ResolvedOptions, now: number): BpfObject {
  const object = loadConfiguredObject(readFileSync(bpfObjectPath("bpf_test")), resolved, { name });
  try {
    setKernelClock(object, now);
    return object;
  } catch (err) {
    object.close();
    throw err;
  }
}

/** The raw IP packet behind an Ethernet header, as the kernel program wants it (a copy). */
export function ethFrame(packet: Uint8Array, family: Family): Uint8Array {
  const frame = new Uint8Array(ETH_HLEN + packet.length);
  frame[12] = family === 4 ? 0x08 : 0x86;
  frame[13] = family === 4 ? 0x00 : 0xdd;
  frame.set(packet, ETH_HLEN);
  return frame;
}
