/**
 * CPU time another process has used (user + system, from /proc/<pid>/stat),
 * so a report can split where time went between this process and a helper
 * it started (the simulator's private etcd).
 */
import { readFileSync } from "node:fs";

/** Clock ticks per second of /proc's utime/stime: 100 on every Linux this runs on (USER_HZ is fixed by the kernel ABI). */
const USER_HZ = 100;

/** Seconds of CPU `pid` has used so far, or undefined when it cannot be read. */
export function processCpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // the command name (field 2) is in parentheses and may hold spaces: count fields after its closing one
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return Number.isFinite(utime) && Number.isFinite(stime) ? (utime + stime) / USER_HZ : undefined;
  } catch {
    return undefined;
  }
}
