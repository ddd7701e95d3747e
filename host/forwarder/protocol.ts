/** Messages between the forwarder's worker thread and the thread that controls it. */
import type { TunIoChoice } from "../tun/tun-io-choice.js";
import type { MessagePort } from "node:worker_threads";
import type { DatapathOptions } from "../config.js";
import type { DatapathCounters } from "../engine.js";
import type { ForwarderStats, OffloadMode } from "./forwarder.js";
import type { ServiceSpec } from "../lb/manager.js";
import type { ServiceFlowSummary } from "../lb/service-flows.js";
import type { EngineChange } from "../policy/engine.js";
import type { SnapshotWritten } from "./snapshot-writer.js";
import type { RawMonitorEvents } from "../monitor/raw-events.js";
import type { CapturedPacket } from "../capture/settings.js";
import type { EspPathOptions } from "./esp-path.js";

export interface WorkerStart {
  options: DatapathOptions;
  /** Services to program before forwarding (validated by the caller: host/lb/state.ts). */
  services?: ServiceSpec[];
  /**
   * The policy tables to program before forwarding: endpoints, ipcache and
   * policy entries as a policy engine holds them (PolicyEngine.snapshot() of
   * the state file's engine, validated by the caller; host/policy/state.ts).
   */
  policy?: EngineChange;
  /** TUN device to create ("mbr%d" picks a free name). */
  device: {
    name?: string; mtu?: number; offloads?: boolean; offloadMode?: OffloadMode;
    /** TUN queues (IFF_MULTI_QUEUE), all decided by this worker's one datapath; default 1 (open-device.ts). */
    queues?: number;
    /**
     * With more than one queue and no offloads: true, an I/O thread per queue
     * does the read(2)/write(2) and this worker only decides (host/tun/ring-tun.ts);
     * false, this worker does every queue's syscalls itself (host/tun/multi-queue.ts).
     * Default: I/O threads only when the machine has a CPU for each of them and
     * one more for this worker (open-device.ts, useIoWorkers).
     */
    ioWorkers?: boolean;
    /**
     * How packets cross between the kernel and JavaScript (host/tun/tun-io-choice.ts):
     * default "auto" (io_uring batches, else read/write batches in C, else one koffi call per packet).
     */
    io?: TunIoChoice;
  };
  /**
   * Conntrack snapshot: restored at start when present (refused whole when
   * bad), then written at once, every `snapshotEveryMs` while forwarding
   * (host/forwarder/snapshot-writer.ts) and at stop.
   */
  snapshotPath?: string;
  /** Default 10 s; the jitter takes up to `snapshotJitter` (default 0.1) of it off at random. */
  snapshotEveryMs?: number;
  snapshotJitter?: number;
  batchSize?: number;
  /** Time the per-batch pipeline's stages into the reported stats (ForwarderOptions.stageTiming). */
  stageTiming?: boolean;
  /** Int32Array over it: [0] = stop requested. */
  control: SharedArrayBuffer;
  /** How often the worker reports (ms). */
  reportEveryMs?: number;
  /** Userspace ESP to the peers' forwarders (esp-path.ts); the device must be without offloads. */
  encrypt?: EspPathOptions;
  /** The worker's end of the command channel (transferred): CommandRequest in, CommandReply out (commands.ts). */
  commands: MessagePort;
}

export interface FlowSummary {
  table: string;
  flow: string;
  proto: string;
  txPackets: number;
  rxPackets: number;
  state: string;
  expiresIn: number;
}

/** One masquerade mapping, its forward half: the flow as the pod sent it and the source it leaves with. */
export interface NatSummary {
  table: string;
  proto: string;
  flow: string;
  source: string;
}

export type WorkerMessage =
  | { type: "ready"; device: string; mtu: number; /** The TUN I/O mode in use (tun-io-choice.ts); absent for a device that is not a Linux TUN. */ tunIo?: string; restored: Record<string, number>; snapshot?: RestoredSnapshot; saved?: SnapshotWritten }
  | { type: "report"; stats: ForwarderStats; counters: DatapathCounters; flows: FlowSummary[]; entries: number; services: ServiceFlowSummary[]; nat: NatSummary[]; natMappings: number }
  /** A periodic snapshot was written, or could not be (forwarding goes on; the next one is tried an interval later). */
  | { type: "snapshot"; saved?: SnapshotWritten; error?: string }
  | { type: "stopped"; stats: ForwarderStats; snapshotEntries: number; saved?: SnapshotWritten }
  /** Monitor events drained after a batch (only while a monitor is on). */
  | { type: "monitor"; events: RawMonitorEvents }
  /** Captured packets of a batch, and how many the capture's rate cap refused (only while a capture is on). */
  | { type: "capture"; packets: CapturedPacket[]; missed: number }
  | { type: "error"; message: string; code?: string };

/** What became of the snapshot found at start. */
export interface RestoredSnapshot {
  path: string;
  /** Its header: who wrote it, when (wall clock, ms), its sequence in that run. */
  pid: number;
  runId: string;
  sequence: number;
  writtenAt: number;
  /** The largest lifetime ahead of the clock its entries may have (carried into this run's snapshots). */
  horizon: number;
  /** Entries restored (conntrack tables only). */
  entries: number;
  /** Set when it was not restored: why. */
  skipped?: string;
}
