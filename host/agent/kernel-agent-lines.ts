/**
 * What both kernel datapath agents (state file: kernel-agent.ts; cluster:
 * cluster-kernel-agent.ts) say and do the same way: the kernel features
 * found, GC runs, and the stop that leaves the programs for the next agent.
 */
import { release } from "node:os";
import { HELPERS, helperSupported } from "../bpf/helper-probe.js";
import type { KernelAgentDatapath } from "../kernel/agent-datapath.js";
import type { PinnedGcRun } from "../kernel/pinned-gc.js";
import type { EndpointDevice, UpsertResult } from "../kernel/templates/endpoint-programs.js";

/** `kernel 6.18.0: bpf_loop (Linux 5.17+, ...): yes`: said at start, so a NotSupported later is no surprise. */
export function kernelFeaturesLine(): string {
  return `kernel ${release()}: ${Object.values(HELPERS).map((h) => `${h.name} (Linux ${h.since}+, ${h.usedBy}): ${helperSupported(h) ? "yes" : "no"}`).join("; ")}`;
}

/** A GC run worth a line: one that deleted something. */
export function gcReporter(say: (line: string) => void): (run: PinnedGcRun) => void {
  return (run) => {
    const deleted = run.tables.reduce((n, t) => n + t.deleted, 0);
    if (deleted || run.natDeleted) say(`gc: ${deleted} conntrack and ${run.natDeleted} NAT entries expired; next run in ${run.nextSeconds.toFixed(0)} s`);
  };
}

/** Stops the datapath: programs left attached for the next agent unless detachOnStop; the maps stay pinned either way. */
export function stopKernelDatapath(agent: KernelAgentDatapath, detachOnStop: boolean, pinDir: string, say: (line: string) => void): void {
  agent.stop({ keepPrograms: !detachOnStop });
  say(detachOnStop
    ? `stopped: programs detached; maps stay pinned in ${pinDir}`
    : `stopped: programs left attached for the next agent, maps pinned in ${pinDir}`);
}

/** One line per endpoint instantiated: what the tests and an operator read. */
export function describeUpsert(id: number, device: EndpointDevice | undefined, r: UpsertResult): string {
  return `endpoint ${id} on ${device?.ifname}: template ${r.key.slice(0, 12)} instantiated (${r.compiled ? "compiled" : "no compile"}), programs ${r.progIds.join(",")} ${r.replaced ? "replaced in place" : "attached"}`;
}
