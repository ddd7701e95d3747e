/**
 * Opening the kernel datapath's maps from their pins in bpffs (as `membrane
 * bpf ...` reads a running datapath): the one place that turns a pin path into
 * a map, with the one message for a map that is not there.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { BpfMap } from "../bpf/map.js";
import { InvalidInputError } from "../errors.js";

/** Opens map `name` pinned under `dir`; `what` names it in the error ("conntrack", "NAT"; default the map's name). */
export function openPinnedMap(dir: string, name: string, what = name): BpfMap {
  const path = join(dir, name);
  if (!existsSync(path)) throw new InvalidInputError(`read ${path}: no pinned ${what} map there (is the kernel datapath loaded with pinning to ${dir}?)`);
  return BpfMap.openPinned(path);
}

/** Runs `use` on the pinned map and closes it whatever happens. */
export function withPinnedMap<T>(dir: string, name: string, use: (map: BpfMap) => T, what = name): T {
  const map = openPinnedMap(dir, name, what);
  try {
    return use(map);
  } finally {
    map.close();
  }
}

/** The kernel's monotonic clock in seconds (what the datapath's lifetimes count in; Node's hrtime on Linux). */
export function monotonicSeconds(): number {
  return Number(process.hrtime.bigint() / 1_000_000_000n);
}
