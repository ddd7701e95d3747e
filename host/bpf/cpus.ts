/**
 * The number of possible CPUs, which sizes every per-CPU map value the kernel
 * copies to or from user space (one slot per possible CPU, not per online
 * CPU: a CPU hot-plugged later already has its slot).
 */
import { readFileSync } from "node:fs";
import { MembraneError } from "../errors.js";

export const POSSIBLE_CPUS_PATH = "/sys/devices/system/cpu/possible";

/** Parses a kernel CPU list ("0-3,5,7-8") into the count of CPUs it names. */
export function parseCpuList(text: string): number {
  const trimmed = text.trim();
  if (trimmed === "") throw new MembraneError("INTERNAL", "empty CPU list");
  let count = 0;
  for (const part of trimmed.split(",")) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) throw new MembraneError("INTERNAL", `bad CPU list ${JSON.stringify(text)}`);
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (hi < lo) throw new MembraneError("INTERNAL", `bad CPU range ${part} in ${JSON.stringify(text)}`);
    count += hi - lo + 1;
  }
  return count;
}

let cached: number | undefined;

/** Possible CPUs on this machine, read once from sysfs. */
export function possibleCpus(): number {
  if (cached !== undefined) return cached;
  let text: string;
  try {
    text = readFileSync(POSSIBLE_CPUS_PATH, "utf8");
  } catch (err) {
    throw new MembraneError("INTERNAL", `read ${POSSIBLE_CPUS_PATH}: ${(err as Error).message}`, { cause: err });
  }
  cached = parseCpuList(text);
  return cached;
}
