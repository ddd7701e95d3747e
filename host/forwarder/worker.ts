/**
 * The forwarder's worker thread: owns the TUN device and the Wasm datapath,
 * forwards until told to stop, then saves conntrack and closes the device.
 * Reports (stats, counters, the busiest flows) go to the controlling thread
 * as messages, so forwarding never waits on it.
 */
import { parentPort, workerData } from "node:worker_threads";
import { renameSync, writeFileSync } from "node:fs";
import { Datapath } from "../datapath.js";
import { openTun } from "../tun/linux-tun.js";
import { Forwarder } from "./forwarder.js";
import { takeSnapshot } from "../conntrack/snapshot.js";
import { prepareDatapath } from "./setup.js";
import { formatEntryFlags, formatTuple, PROTO_NAMES } from "../conntrack/records.js";
import { monotonicSeconds } from "./clock.js";
import type { FlowSummary, NatSummary, WorkerMessage, WorkerStart } from "./protocol.js";
import type { ServiceFlowSummary } from "../lb/service-flows.js";
import { MembraneError } from "../errors.js";
import { serviceFlows } from "../lb/service-flows.js";
import { CommandApplier } from "./command-applier.js";
import { CommandInbox } from "./command-inbox.js";

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
  const { dp, restored } = await prepareDatapath(start);
  const offloads = start.device.offloads ?? false;
  const device = openTun({
    name: start.device.name, mtu: start.device.mtu, vnetHdr: offloads,
    offloads: offloads ? { csum: true, tso: true, uso: true } : undefined,
  });
  try {
    post({ type: "ready", device: device.name, mtu: device.mtu, restored });
    // Commands are applied between batches (Forwarder's betweenBatches hook), on the forwarder's clock.
    const fwd = new Forwarder(dp, device, { batchSize: start.batchSize, offloadMode: start.device.offloadMode, betweenBatches: () => inbox.drain() });
    const inbox = new CommandInbox(start.commands, new CommandApplier(dp, { clock: monotonicSeconds, batches: () => fwd.stats.batches }));
    const every = start.reportEveryMs ?? 1000;
    let nextReport = Date.now() + every;
    fwd.run(() => {
      if (Date.now() >= nextReport) {
        post({ type: "report", stats: { ...fwd.stats }, counters: dp.counters(), ...topFlows(dp), ...natMappings(dp) });
        nextReport = Date.now() + every;
      }
      return Atomics.load(control, 0) === 1;
    }, IDLE_POLL_MS);
    inbox.close();
    let snapshotEntries = 0;
    if (start.snapshotPath) {
      const snap = takeSnapshot(dp);
      // Write then rename: a crash mid-write must not leave a half snapshot behind.
      writeFileSync(`${start.snapshotPath}.tmp`, snap);
      renameSync(`${start.snapshotPath}.tmp`, start.snapshotPath);
      snapshotEntries = [...dp.conntrack()].length;
    }
    // Close before saying so: the controller terminates the thread on "stopped",
    // and a device still open then would outlive the forwarder.
    device.close();
    post({ type: "stopped", stats: { ...fwd.stats }, snapshotEntries });
  } finally {
    device.close();
  }
}

main().catch((err) => {
  post({ type: "error", message: (err as Error).message, code: err instanceof MembraneError ? err.code : undefined });
});
