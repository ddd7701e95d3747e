/**
 * The kernel's boot id (/proc/sys/kernel/random/boot_id): a random UUID drawn
 * at every boot. The datapath clock is CLOCK_MONOTONIC, which restarts at
 * boot, so anything that stores absolute lifetimes on that clock (conntrack
 * snapshots) records the boot id to tell whether its numbers still mean
 * anything.
 */
import { readFileSync } from "node:fs";

export const BOOT_ID_BYTES = 16;

let cached: Uint8Array | undefined;

/** The boot id as 16 bytes; all zeros where the kernel does not expose it (then "unknown" matches only itself). */
export function bootId(): Uint8Array {
  if (cached) return cached;
  const id = new Uint8Array(BOOT_ID_BYTES);
  try {
    const hex = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim().replace(/-/g, "");
    if (/^[0-9a-f]{32}$/i.test(hex)) id.set(Buffer.from(hex, "hex"));
  } catch {
    // Not Linux, or /proc not mounted: stays zero.
  }
  cached = id;
  return id;
}

/** "2b5f6185-8a4c-440c-bca8-c55a7326a055" for 16 bytes. */
export function formatBootId(id: Uint8Array): string {
  const h = Buffer.from(id).toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
