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
 *
 * A bias found by that check on the VM this was written on: a syscall's
 * exit to user mode runs with interrupts off (and, with the CPU
 * vulnerability mitigations, is a large part of a syscall's cost); a tick
 * that falls there is delivered right after the return, in user mode, and
 * charged as user time. So every syscall leaves some of its own time in
 * utime: the plain C read/write loop, which does nothing in user mode
 * between its syscalls, shows ~500 ns of "user" time per syscall there. The
 * suites therefore also print an estimate with that removed
 * (withoutSyscallExits): utime per packet - syscalls per packet x the C
 * loop's utime per syscall. The verdict on the goal uses the raw figure,
 * which can only overstate the forwarder's user time.
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

/**
 * User ns per packet with the syscalls' misattributed exits taken out (see
 * the module comment): `cLoopUserNsPerPacket` comes from a loop that makes
 * exactly 2 syscalls a packet and nothing else, so half of it is what one
 * syscall leaves in utime. An estimate: undefined without both figures.
 */
export function withoutSyscallExits(userNsPerPacket?: number, syscallsPerPacket?: number, cLoopUserNsPerPacket?: number): number | undefined {
  if (userNsPerPacket === undefined || syscallsPerPacket === undefined || cLoopUserNsPerPacket === undefined) return undefined;
  return userNsPerPacket - syscallsPerPacket * (cLoopUserNsPerPacket / 2);
}
