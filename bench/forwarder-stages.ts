/**
 * `node dist/bench/forwarder-stages.js` (package.json: "bench:forwarder-stages"):
 * where the forwarder's time per packet goes, stage by stage, on 64-byte UDP
 * between namespaces (the forwarder suite's topology, sender, sink and C
 * tool: bench/forwarder.ts), with the plain C read/write loop in the same run
 * as the reference for what the read(2)/write(2) syscalls alone cost.
 *
 * Order F C F: each forwarder run is adjacent in time to the C loop run.
 * Stage times come from the forwarder's own per-batch timer
 * (host/forwarder/stage-timer.ts: one clock read per stage per batch) over
 * the whole run, warm-up included, divided by the packets it decided; the
 * thread CPU per packet is over the measuring window (schedstat), as in the
 * forwarder suite. "Beyond the syscalls" = forwarder thread ns/pkt - C loop
 * thread ns/pkt: what the forwarder spends on a packet that the bare syscall
 * loop does not (the issue's goal: at most 150 ns).
 *
 * Namespaces and the TUN are named fp-stg-*; a killed run is swept by the next.
 * Profile the worker under the same load: FP_STAGES_ONLY=forwarder
 * node --cpu-prof --cpu-prof-dir=<dir> dist/bench/forwarder-stages.js
 * (every thread writes its own .cpuprofile; bench/profile-top.ts summarises one).
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { libcLibrary } from "../host/sys/libc.js";
import { threadCpuClock } from "../host/sys/thread-cpu-clock.js";
import { Run, unavailable, type UdpRun } from "./forwarder.js";
import { STAGES } from "../host/forwarder/stage-timer.js";
import { num, printTable, type Row } from "./report.js";

const PREFIX = "fp-stg";
const BEYOND_SYSCALLS_GOAL_NS = 150;

async function main(): Promise<void> {
  const why = unavailable();
  if (why) {
    console.log(`skipped: ${why}`);
    return;
  }
  const run = new Run(PREFIX);
  // FP_STAGES_TIMING=0: no timer (for a CPU profile that shows the forwarder, not its timer).
  run.stageTiming = process.env.FP_STAGES_TIMING !== "0";
  const onSignal = () => void run.cleanup().finally(() => process.exit(130));
  process.once("SIGINT", onSignal);
  // One queue: the stages of one worker on one fd, against the C loop on one fd.
  const order: Array<"forwarder-1q" | "c-loop"> = process.env.FP_STAGES_ONLY === "forwarder" ? ["forwarder-1q"] : ["forwarder-1q", "c-loop", "forwarder-1q"];
  const rows: Array<UdpRun & { load: number }> = [];
  try {
    await run.setup();
    const pod2 = run.topo.pod2;
    const sink = run.toolIn(pod2.ns, ["sink", pod2.v4, 9000], "UDP sink");
    await sink.ready();
    const counts = new Map<string, number>();
    for (const variant of order) {
      const n = (counts.get(variant) ?? 0) + 1;
      counts.set(variant, n);
      process.stdout.write(`  UDP ${variant}, run ${n}...`);
      const r = await run.udp(variant, n);
      rows.push({ ...r, load: loadavg()[0]! });
      console.log(r.error ? ` FAILED: ${r.error}` : " done");
    }
  } finally {
    const problems = await run.cleanup();
    if (problems.length) console.log(`  cleanup left: ${problems.join("; ")}`);
    process.removeListener("SIGINT", onSignal);
  }
  report(rows);
  const ffi = ffiCallNs();
  console.log(`\n  One FFI call (koffi) of a syscall that does nothing (getppid(2)), in this thread: ${num(ffi.koffi, 0)} ns;`
    + ` the same syscall from C: ${ffi.c === undefined ? "-" : `${num(ffi.c, 0)} ns`} (load average ${num(loadavg()[0]!, 2)}).`);
  console.log("  The forwarder makes two such calls per packet (read, write) where the C loop makes two plain syscalls.");
}

/** CPU ns per getppid(2) through koffi, and from a C loop (cc) when a compiler is present. */
function ffiCallNs(): { koffi: number; c?: number } {
  const getppid = libcLibrary().func("getppid", "int", []);
  const calls = 1_000_000;
  for (let i = 0; i < 10_000; i++) getppid();
  // CPU time, not wall time: the machine is shared.
  const cpu = threadCpuClock();
  const t0 = cpu();
  for (let i = 0; i < calls; i++) getppid();
  const koffi = (cpu() - t0) / calls;
  let c: number | undefined;
  const dir = mkdtempSync(join(tmpdir(), "fp-ffi-"));
  try {
    writeFileSync(join(dir, "p.c"), `#include <stdio.h>
#include <time.h>
#include <unistd.h>
int main(void) { struct timespec a, b; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
  for (int i = 0; i < ${calls}; i++) getppid();
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
  printf("%f\\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / ${calls}.0); return 0; }
`);
    execFileSync("cc", ["-O2", "-o", join(dir, "p"), join(dir, "p.c")], { stdio: "ignore" });
    c = Number(execFileSync(join(dir, "p"), { encoding: "utf8" }).trim());
  } catch {
    c = undefined;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return { koffi, c };
}

function report(rows: Array<UdpRun & { load: number }>): void {
  const fwd = rows.filter((r) => r.variant === "forwarder-1q" && !r.error && r.stages);
  const loop = rows.filter((r) => r.variant === "c-loop" && !r.error);
  const fwdRuns = rows.filter((r) => r.variant === "forwarder-1q" && !r.error);
  const stageRows: Row[] = [];
  for (const stage of STAGES) {
    const row: Row = { stage };
    fwd.forEach((r, i) => {
      const packets = r.moverTotals?.packetsIn ?? 0;
      row[`ns/pkt run ${i + 1}`] = packets ? num(r.stages!.ns[stage] / packets, 1) : "-";
    });
    stageRows.push(row);
  }
  const total: Row = { stage: "all stages" };
  fwd.forEach((r, i) => {
    const packets = r.moverTotals?.packetsIn ?? 0;
    const sum = STAGES.reduce((s, st) => s + r.stages!.ns[st], 0);
    total[`ns/pkt run ${i + 1}`] = packets ? num(sum / packets, 1) : "-";
  });
  stageRows.push(total);
  const batch: Row = { stage: "packets per batch" };
  fwd.forEach((r, i) => (batch[`ns/pkt run ${i + 1}`] = num((r.moverTotals?.packetsIn ?? 0) / Math.max(1, r.stages!.batches), 1)));
  stageRows.push(batch);
  const clock: Row = { stage: "(the timer: 7 clock reads a batch, included above)" };
  fwd.forEach((r, i) => (clock[`ns/pkt run ${i + 1}`] = num((7 * r.stages!.clockNs * r.stages!.batches) / Math.max(1, r.moverTotals?.packetsIn ?? 0), 1)));
  stageRows.push(clock);
  printTable("Forwarder thread CPU time per packet by pipeline stage (64-byte UDP, batch 128, 1 queue, no offloads; whole run)", stageRows, [
    "CPU time of the worker thread (CLOCK_THREAD_CPUTIME_ID), kernel time in its syscalls included; not wall time.",
    "read / write = the device's read(2) / write(2) calls through the FFI (koffi), syscall included.",
    "admit = declaring the packets to the Wasm batch; decide = the one Wasm call; collect = verdicts back, the write list;",
    "housekeeping = commands between batches, the run loop's callback (reports, snapshots), conntrack GC.",
  ]);

  const runRows: Row[] = rows.map((r) => ({
    run: `${r.variant} ${r.run}`,
    "received pps": r.receivedPps !== undefined ? num(r.receivedPps) : "-",
    "thread ns/pkt": r.threadNsPerPacket !== undefined ? num(r.threadNsPerPacket) : "-",
    "mover CPU": r.moverCpuPercent !== undefined ? `${num(r.moverCpuPercent)}%` : "-",
    "load avg (1 min)": num(r.load, 2),
    error: r.error ?? "",
  }));
  const cNs = mean(loop.map((r) => r.threadNsPerPacket));
  const fNs = mean(fwdRuns.map((r) => r.threadNsPerPacket));
  const notes: string[] = [];
  if (cNs !== undefined && fNs !== undefined) {
    const beyond = fNs - cNs;
    notes.push(
      `GOAL CPU per packet beyond the read and write syscalls <= ${BEYOND_SYSCALLS_GOAL_NS} ns: ${beyond <= BEYOND_SYSCALLS_GOAL_NS ? "MET" : "NOT MET"}`
        + ` - forwarder ${num(fNs)} ns/pkt - C loop ${num(cNs)} ns/pkt = ${num(beyond)} ns (runs adjacent in time: F C F).`,
    );
  }
  notes.push("The machine is shared (see load average): figures are noisy and must be re-run on a quiet machine.");
  printTable("Runs (measuring window)", runRows, notes);
}

function mean(xs: Array<number | undefined>): number | undefined {
  const v = xs.filter((x): x is number => x !== undefined && Number.isFinite(x));
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : undefined;
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : e);
  process.exitCode = 1;
});
