/** A process's resident memory from /proc/<pid>/status (now and its peak), for reports. */
import { readFileSync } from "node:fs";

export interface ProcessMemory {
  rssBytes: number;
  peakRssBytes: number;
}

export function processMemory(pid: number): ProcessMemory | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN) * 1024;
    return { rssBytes: kib("VmRSS"), peakRssBytes: kib("VmHWM") };
  } catch {
    return undefined;
  }
}
