/**
 * Starts and stops the forwarder worker from the main thread. The worker
 * forwards on its own; this side only reads its reports.
 */
import { MessageChannel, Worker } from "node:worker_threads";
import { join } from "node:path";
import { packageRoot } from "../package-root.js";
import { MembraneError } from "../errors.js";
import type { DatapathOptions } from "../config.js";
import type { WorkerMessage, WorkerStart } from "./protocol.js";
import { CommandClient } from "./command-client.js";
import type { CommandResult, ForwarderCommand, ForwarderController } from "./commands.js";

export interface ForwarderStartOptions {
  options?: DatapathOptions;
  services?: WorkerStart["services"];
  policy?: WorkerStart["policy"];
  /**
   * offloads: open the TUN with a virtio-net header and TSO/USO/checksum
   * offloads; offloadMode: what the forwarder does with them (OffloadMode).
   */
  device?: WorkerStart["device"];
  snapshotPath?: string;
  /** Periodic snapshots (WorkerStart.snapshotEveryMs). */
  snapshotEveryMs?: number;
  snapshotJitter?: number;
  batchSize?: number;
  encrypt?: WorkerStart["encrypt"];
  /** Time the pipeline's stages (WorkerStart.stageTiming): the reports' stats.stages. */
  stageTiming?: boolean;
  reportEveryMs?: number;
  onReport?: (report: Extract<WorkerMessage, { type: "report" }>) => void;
  /** A periodic snapshot was written (or failed: `error`). */
  onSnapshot?: (m: Extract<WorkerMessage, { type: "snapshot" }>) => void;
}

export class ForwarderHandle implements ForwarderController {
  private stopped?: Promise<Extract<WorkerMessage, { type: "stopped" }>>;
  private constructor(
    private readonly worker: Worker,
    private readonly control: Int32Array,
    readonly ready: Extract<WorkerMessage, { type: "ready" }>,
    private readonly done: Promise<Extract<WorkerMessage, { type: "stopped" }>>,
    private readonly commands: CommandClient,
  ) {}

  /**
   * Changes the running forwarder: services, NAT, policy, conntrack flush or
   * GC (commands.ts). Applied between two batches; resolves with the one
   * result (ok: false with a code and the reason when refused, nothing changed).
   */
  apply(command: ForwarderCommand): Promise<CommandResult> {
    return this.commands.apply(command);
  }

  static start(opts: ForwarderStartOptions = {}): Promise<ForwarderHandle> {
    const control = new SharedArrayBuffer(4);
    const channel = new MessageChannel();
    const data: WorkerStart = {
      options: opts.options ?? {}, services: opts.services, policy: opts.policy, device: opts.device ?? {}, snapshotPath: opts.snapshotPath,
      snapshotEveryMs: opts.snapshotEveryMs, snapshotJitter: opts.snapshotJitter, batchSize: opts.batchSize, stageTiming: opts.stageTiming, control, reportEveryMs: opts.reportEveryMs, commands: channel.port2,
      encrypt: opts.encrypt,
    };
    const commands = new CommandClient(channel.port1);
    // Workers load compiled JS: always the one in dist/, also when the caller runs from source (tests).
    const file = join(packageRoot(), "dist/host/forwarder/worker.js");
    const worker = new Worker(file, { workerData: data, transferList: [channel.port2] });
    return new Promise((resolve, reject) => {
      let resolveDone!: (m: Extract<WorkerMessage, { type: "stopped" }>) => void;
      let rejectDone!: (e: Error) => void;
      const done = new Promise<Extract<WorkerMessage, { type: "stopped" }>>((res, rej) => { resolveDone = res; rejectDone = rej; });
      done.catch(() => {});
      let started = false;
      worker.on("message", (m: WorkerMessage) => {
        if (m.type === "ready") { started = true; resolve(new ForwarderHandle(worker, new Int32Array(control), m, done, commands)); }
        else if (m.type === "report") opts.onReport?.(m);
        else if (m.type === "snapshot") opts.onSnapshot?.(m);
        else if (m.type === "stopped") resolveDone(m);
        else if (m.type === "error") {
          const err = new MembraneError(m.code ?? "FORWARDER", `forwarder: ${m.message}`);
          if (started) rejectDone(err); else reject(err);
        }
      });
      worker.on("error", (e) => (started ? rejectDone(e) : reject(e)));
      worker.on("exit", (code) => {
        commands.close(`the forwarder worker exited (code ${code})`);
        const err = new MembraneError("FORWARDER", `forwarder worker exited (code ${code})`);
        if (!started) reject(err); else rejectDone(err);
      });
    });
  }

  /** Asks the worker to stop; resolves once conntrack is saved and the device closed. */
  stop(): Promise<Extract<WorkerMessage, { type: "stopped" }>> {
    if (!this.stopped) {
      Atomics.store(this.control, 0, 1);
      this.stopped = this.done.finally(() => {
        this.commands.close();
        return this.worker.terminate();
      });
    }
    return this.stopped;
  }
}
