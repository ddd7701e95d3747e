/**
 * The forwarder's worker thread: owns the TUN device and the Wasm datapath,
 * forwards until told to stop, then saves conntrack and closes the device.
 * Reports (stats, counters, the busiest flows) go to the controlling thread
 * as messages, so forwarding never waits on it.
 */
import { parentPort, workerData } from "node:worker_threads";
import { Datapath } from "../datapath.js";
import { deviceTunIo, openForwarderDevice } from "./open-device.js";
import { Forwarder, type ForwarderStats } from "./forwarder.js";
import { prepareDatapath } from "./setup.js";
import { openEspPath } from "./esp-path.js";
import { SnapshotWriter } from "./snapshot-writer.js";
import { CommandApplier } from "./command-applier.js";
import { CommandInbox } from "./command-inbox.js";
import { formatEntryFlags, formatTuple, PROTO_NAMES } from "../conntrack/records.js";
import { monotonicSeconds } from "./clock.js";
import type { FlowSummary, NatSummary, WorkerMessage, WorkerStart } from "./protocol.js";
import type { ServiceFlowSummary } from "../lb/service-flows.js";
import { MembraneError } from "../errors.js";
import { serviceFlows } from "../lb/service-flows.js";

// Room for the demo's long-running flows (pods, ext, the service VIPs, both families) beside short ones.
const TOP_FLOWS = 24;
// How long an idle forwarder waits for packets before it looks for commands again: a command's latency when no traffic flows.
const IDLE_POLL_MS = 20;
// The newest masquerade mappings: enough to show each protocol and family of the demo's traffic to ext.
const TOP_NAT = 12;

function post(m: WorkerMessage): void {
  parentPort!.postMessage(m);
}

const hostPort = (addr: string, port: number) => (addr.includes(":") ? `[${addr}]:${port}` : `${addr}:${port}`);

/** The forward halves of the NAT pairs, newest first (the reverse half mirrors each). */
function natMappings(dp: Datapath): { nat: NatSummary[]; natMappings: number } {
  const forward = dp.nat.list().filter((r) => r.dir === "egress").sort((a, b) => b.created - a.created);
  const nat = forward.slice(0, TOP_NAT).map((r) => {
    // Echo flows: the identifier is the "port" (the destination's in the key, as conntrack keeps it).
    const echo = r.proto === 1 || r.proto === 58;
    return {
      table: r.table, proto: PROTO_NAMES[r.proto] ?? String(r.proto),
      flow: echo ? `${r.src} -> ${r.dst} id=${r.dport}` : `${hostPort(r.src, r.sport)} -> ${hostPort(r.dst, r.dport)}`,
      source: echo ? `${r.toAddr} id=${r.toPort}` : hostPort(r.toAddr, r.toPort),
    };
  });
  return { nat, natMappings: forward.length };
}

function topFlows(dp: Datapath): { flows: FlowSummary[]; entries: number; services: ServiceFlowSummary[] } {
  const now = monotonicSeconds();
  const all = [...dp.conntrack()];
  const services = serviceFlows(dp.services.listServices(), all);
  const flows = all
    .sort((a, b) => Number(b.entry.txPackets + b.entry.rxPackets - (a.entry.txPackets + a.entry.rxPackets)))
    .slice(0, TOP_FLOWS)
    .map((r) => ({
      table: r.table, flow: formatTuple(r.tuple), proto: PROTO_NAMES[r.tuple.proto] ?? String(r.tuple.proto),
      txPackets: Number(r.entry.txPackets), rxPackets: Number(r.entry.rxPackets),
      state: formatEntryFlags(r.entry.flags), expiresIn: r.entry.lifetime - now,
    }));
  return { flows, entries: all.length, services };
}

async function main(): Promise<void> {
  const start = workerData as WorkerStart;
  const control = new Int32Array(start.control);
  const { dp, restored, snapshot } = await prepareDatapath(start);
  // From here on the snapshot on disk is this run's (snapshot-writer.ts says why).
  const snapshots = start.snapshotPath
    ? new SnapshotWriter(dp, { path: start.snapshotPath, everyMs: start.snapshotEveryMs, jitter: start.snapshotJitter, horizon: snapshot?.horizon })
    : undefined;
  const saved = snapshots?.write();
  // Encryption seals packet by packet on one queue (esp-path.ts); without it, the queues asked for.
  const esp = start.encrypt ? openEspPath(openForwarderDevice({ ...start.device, queues: 1 }), start.encrypt) : undefined;
  const device = esp ?? openForwarderDevice(start.device);
  try {
    // Before the Forwarder takes its views of Wasm memory: creating the monitor ring grows memory.
    dp.monitor().listener = (events) => post({ type: "monitor", events });
    dp.capture().listener = (packets, missed) => post({ type: "capture", packets, missed });
    // Commands are applied between batches (Forwarder's betweenBatches hook), on the forwarder's clock.
    const fwd = new Forwarder(dp, device, { batchSize: start.batchSize, stageTiming: start.stageTiming, offloadMode: start.device.offloadMode, betweenBatches: () => inbox.drain() });
    const inbox = new CommandInbox(start.commands, new CommandApplier(dp, { clock: monotonicSeconds, batches: () => fwd.stats.batches, ...(esp ? { setPeers: (p) => esp.setPeers(p) } : {}) }));
    const stats = (): ForwarderStats => {
      const tunIo = device.ioTuning?.();
      return tunIo?.length ? { ...fwd.stats, tunIo } : { ...fwd.stats };
    };
    const report = () => post({ type: "report", stats: stats(), counters: dp.counters(), ...topFlows(dp), ...natMappings(dp) });
    // The first report (restored flows, zero traffic) before "ready": the agent's status file has content from the start.
    report();
    post({ type: "ready", device: device.name, mtu: device.mtu, tunIo: deviceTunIo(device), restored, snapshot, saved });
    const every = start.reportEveryMs ?? 1000;
    let nextReport = Date.now() + every;
    fwd.run(() => {
      const now = Date.now();
      if (now >= nextReport) {
        report();
        nextReport = Date.now() + every;
      }
      if (snapshots?.due(now)) {
        try {
          post({ type: "snapshot", saved: snapshots.write(now) });
        } catch (err) {
          // A full disk must not stop forwarding: said, and tried again an interval later.
          post({ type: "snapshot", error: (err as Error).message });
        }
      }
      return Atomics.load(control, 0) === 1;
    }, IDLE_POLL_MS);
    inbox.close();
    const final = snapshots?.write();
    // Close before saying so: the controller terminates the thread on "stopped",
    // and a device still open then would outlive the forwarder.
    device.close();
    post({ type: "stopped", stats: stats(), snapshotEntries: final?.entries ?? 0, saved: final });
  } finally {
    device.close();
  }
}

main().catch((err) => {
  post({ type: "error", message: (err as Error).message, code: err instanceof MembraneError ? err.code : undefined });
});
