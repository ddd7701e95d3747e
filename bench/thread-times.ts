/**
 * One thread's CPU time from /proc, split into user and kernel (system)
 * mode: how the forwarder suites measure "CPU per packet beyond the read and
 * write syscalls" (bench/forwarder.ts, bench/forwarder-stages.ts).
 *
 * - cpuNs: the thread's on-CPU time, exact (schedstat: the scheduler's
 *   sum_exec_runtime in ns); else utime + stime.
 * - userNs / systemNs: /proc/<pid>/task/<tid>/stat utime and stime, in
 *   USER_HZ ticks (sysconf(_SC_CLK_TCK), 100 on Linux: 10 ms steps).
 *
 * How the kernel splits user from system time (kernel/sched/cputime.c, a
 * kernel with tick accounting, i.e. without CONFIG_VIRT_CPU_ACCOUNTING_GEN):
 * at every scheduler tick (CONFIG_HZ a second; 250 on the machine the suites
 * were written on) the running thread is charged one tick, as user time when
 * the tick interrupted user mode, else as system time. What /proc shows is
 * then scaled (cputime_adjust) so that utime + stime equals the exact
 * runtime, keeping the sampled ratio. So user time is exact runtime x a
 * sampled share: over a 5 s window of a busy thread that is ~1,250 samples,
 * and the share's standard error is sqrt(p(1-p)/1250), about 0.8 points of
 * runtime at p = 10% (relative error ~8%); the 10 ms display step adds
 * ±0.2% of a 5 s window. Fine for a per-window mean, useless for anything
 * shorter than a second. bench/forwarder-stages.ts checks the split on two
 * loops of known shape (pure user mode; a null syscall through koffi).
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

export interface ThreadTimes {
  /** Exact on-CPU time, ns. */
  cpuNs: number;
  /** Sampled user-mode share of it, ns (see the module comment). */
  userNs: number;
  /** Sampled kernel-mode share, ns. */
  systemNs: number;
}

let userHz: number | undefined;

/** USER_HZ: the unit of utime/stime in /proc/<pid>/stat. */
export function clockTicksPerSecond(): number {
  if (userHz === undefined) {
    try {
      userHz = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      userHz = 100;
    }
  }
  return userHz;
}

/** The times of thread `tid` of process `pid` ("self": this process), now. */
export function threadTimes(pid: number | "self", tid: number): ThreadTimes {
  const base = `/proc/${pid}/task/${tid}`;
  const stat = readFileSync(`${base}/stat`, "utf8");
  // comm (field 2) may contain spaces and parentheses: the fields after the last ") " are fixed.
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const tick = 1e9 / clockTicksPerSecond();
  // Fields 14 and 15 of stat (utime, stime) are the 12th and 13th after comm.
  const userNs = Number(f[11]) * tick;
  const systemNs = Number(f[12]) * tick;
  let cpuNs = userNs + systemNs;
  try {
    cpuNs = Number(readFileSync(`${base}/schedstat`, "utf8").split(" ")[0]);
  } catch {
    // no schedstat (CONFIG_SCHED_INFO off): the tick figures' sum
  }
  return { cpuNs, userNs, systemNs };
}

/** b - a, field by field. */
export function timesSince(a: ThreadTimes, b: ThreadTimes): ThreadTimes {
  return { cpuNs: b.cpuNs - a.cpuNs, userNs: b.userNs - a.userNs, systemNs: b.systemNs - a.systemNs };
}
