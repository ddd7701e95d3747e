/**
 * What the TUN forwarder e2e suites share: a ForwarderTopology (namespaces
 * named "<prefix>-*", host/demo/topology.ts) with a ForwarderHandle attached
 * as its only path, the worker's reports as they come, waiting on a flow or
 * a fresh report in them, and a teardown that always runs and lists what it
 * could not undo, so afterAll can fail on leftovers.
 */
import { existsSync, rmSync } from "node:fs";
import { ForwarderHandle, type ForwarderStartOptions } from "../../host/forwarder/controller.js";
import type { FlowSummary, WorkerMessage } from "../../host/forwarder/protocol.js";
import { ForwarderTopology, type TopologyOptions } from "../../host/demo/topology.js";
import { waitFor } from "../support/wait-for.js";

export type Report = Extract<WorkerMessage, { type: "report" }>;
export type Stopped = Extract<WorkerMessage, { type: "stopped" }>;

/** How long teardown gives a forwarder to stop before it reports it as a problem. */
const STOP_MS = 5_000;

export class ForwarderLab {
  topo: ForwarderTopology | undefined;
  fwd: ForwarderHandle | undefined;
  /** The reports of the forwarder running now (cleared at each start). */
  reports: Report[] = [];
  /** Every forwarder's ready message, in start order. */
  readonly starts: Array<ForwarderHandle["ready"]> = [];
  /** At most 15 bytes: a prefix of up to 11 bytes + "-tun". */
  readonly tun: string;

  /** `files`: what the forwarders write outside the namespaces (snapshots), removed and checked at teardown. */
  constructor(readonly prefix: string, private readonly files: string[] = []) {
    this.tun = `${prefix}-tun`;
  }

  latest(): Report | undefined {
    return this.reports.at(-1);
  }

  /** The latest report's flows, for a failure message. */
  describeFlows(): string {
    return `latest report's flows: ${JSON.stringify(this.latest()?.flows ?? "none")}`;
  }

  /** Builds the topology and runs `start` (which starts the first forwarder); on failure tears everything down and rethrows. */
  async open(options: TopologyOptions, start: () => Promise<unknown>): Promise<void> {
    try {
      for (const f of this.files) rmSync(f, { force: true });
      this.topo = await ForwarderTopology.create(this.prefix, options);
      await this.topo.resolveNeighbours();
      await start();
    } catch (err) {
      const problems = await this.teardown();
      if (problems.length) (err as Error).message += `; cleanup: ${problems.join("; ")}`;
      throw err;
    }
  }

  /** Starts a forwarder on this lab's TUN (reporting every 100 ms) and attaches the TUN to the node. */
  async start(options: Omit<ForwarderStartOptions, "reportEveryMs" | "onReport">): Promise<ForwarderHandle> {
    this.reports = [];
    const handle = await ForwarderHandle.start({
      ...options,
      device: { ...options.device, name: this.tun },
      reportEveryMs: 100,
      onReport: (r) => this.reports.push(r),
    });
    this.fwd = handle;
    this.starts.push(handle.ready);
    this.topo!.attachTun(handle.ready.device);
    return handle;
  }

  /** Stops the forwarder; `reclaimedFds` lists TUN fds the worker left open (normally none: it closes its device before "stopped"). */
  async stop(): Promise<{ stopped: Stopped; reclaimedFds: number[] }> {
    const handle = this.fwd!;
    this.fwd = undefined;
    const stopped = await handle.stop();
    // Closing the fd destroys the device, and with it the route into it.
    return { stopped, reclaimedFds: await this.topo!.releaseTun() };
  }

  /** Waits for a report whose flow `flow` satisfies `ok`. */
  waitForFlow(flow: string, ok: (f: FlowSummary) => boolean, timeoutMs = 5_000): Promise<FlowSummary> {
    return waitFor(`flow ${flow} in the forwarder's report`, () => this.latest()?.flows.find((f) => f.flow === flow && ok(f)), {
      timeoutMs,
      detail: () => this.describeFlows(),
    });
  }

  /**
   * Waits for a report the worker assembled after this call, so it counts
   * everything forwarded before it: the second report to arrive from now
   * (the first may have been on its way already).
   */
  reportAfterNow(): Promise<Report> {
    const reports = this.reports;
    const seen = reports.length;
    return waitFor("a report after everything so far", () => (reports.length >= seen + 2 ? reports.at(-1) : undefined));
  }

  /** Stops the forwarder (bounded), removes the topology and the files; returns what went wrong. */
  async teardown(): Promise<string[]> {
    const problems: string[] = [];
    if (this.fwd) {
      const handle = this.fwd;
      this.fwd = undefined;
      try {
        await withDeadline(handle.stop(), STOP_MS, "forwarder did not stop within 5 s");
        await this.topo?.releaseTun();
      } catch (err) {
        problems.push(`stop forwarder: ${(err as Error).message}`);
      }
    }
    if (this.topo) problems.push(...(await this.topo.teardown()));
    for (const f of this.files) for (const g of [f, `${f}.tmp`]) rmSync(g, { force: true });
    return problems;
  }

  /** What is still there after teardown: namespaces, links, agents, files. */
  leftovers(): string[] {
    const left = this.topo?.leftovers() ?? [];
    for (const f of this.files) for (const g of [f, `${f}.tmp`]) if (existsSync(g)) left.push(`file ${g}`);
    return left;
  }

  /** For afterAll: tears down and fails naming whatever could not be undone. */
  async close(): Promise<void> {
    const problems = await this.teardown();
    const left = this.leftovers();
    if (problems.length || left.length) throw new Error(`cleanup incomplete: ${[...problems, ...left].join("; ")}`);
  }
}

/** `promise`, or an error `message` once `ms` have passed. */
function withDeadline<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(message)), ms)));
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}
