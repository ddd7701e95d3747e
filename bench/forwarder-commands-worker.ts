/**
 * The worker of bench/forwarder-commands.ts: the forwarder's own loop
 * (Forwarder with the CommandInbox between batches, as host/forwarder/worker.ts
 * runs it) on an in-memory device that is never empty: every read returns a
 * full batch of established TCP flows (half of them through the service VIP),
 * copied from prebuilt packets. So the forwarder runs at full load, bounded
 * by the datapath and the loop, not by a kernel device.
 *
 * After a command lands (inbox.drain() > 0) the next batch carries a probe
 * first: a new flow's SYN to the VIP, from an address never used before. The
 * device sees it decided when the batch is written and posts the moment
 * (process.hrtime, shared by every thread) and where the SYN went, so the
 * controlling thread measures command -> first packet decided under the new
 * state, and checks that it was the new state.
 */
import { parentPort, workerData } from "node:worker_threads";
import type { MessagePort } from "node:worker_threads";
import { Datapath } from "../host/datapath.js";
import { Forwarder } from "../host/forwarder/forwarder.js";
import { CommandApplier } from "../host/forwarder/command-applier.js";
import { CommandInbox } from "../host/forwarder/command-inbox.js";
import type { TunDevice } from "../host/tun/device.js";
import { packet4 } from "../host/packet/build.js";
import type { ServiceSpec } from "../host/lb/manager.js";

export interface CommandBenchStart {
  commands: MessagePort;
  /** [0] stop requested; [1] packets decided so far (updated after every batch). */
  shared: SharedArrayBuffer;
  batchSize: number;
  flows: number;
  service: ServiceSpec;
}

export interface ProbeSeen {
  type: "probe";
  /** process.hrtime.bigint() when the batch holding the probe was written, as a decimal string. */
  at: string;
  /** Where the probe SYN went (the backend its new flow got). */
  dst: string;
}

const start = workerData as CommandBenchStart;
const shared = new Float64Array(start.shared);
const CLIENT = (i: number) => `10.1.${(i >> 8) & 255}.${i & 255}`;

class LoadDevice implements TunDevice {
  readonly name = "load0";
  readonly mtu = 1500;
  readonly vnetHdr = false;
  readonly readCapacity = 1500;
  private next = 0;
  private probe?: Uint8Array;
  private probeSeq = 0;
  private probeInBatch = false;
  constructor(private readonly packets: Uint8Array[]) {}

  /** The next batch begins with a new flow's SYN to the VIP. */
  armProbe(): void {
    const n = this.probeSeq++;
    this.probe = packet4({ src: `10.9.${(n >> 8) & 255}.${n & 255}`, dst: start.service.vip }).tcp({ sport: 40000, dport: start.service.port, flags: { syn: true } });
  }

  read(bufs: Uint8Array[], sizes: number[], offset: number): number {
    let i = 0;
    this.probeInBatch = false;
    if (this.probe) {
      bufs[0].set(this.probe, offset);
      sizes[0] = this.probe.length;
      this.probe = undefined;
      this.probeInBatch = true;
      i = 1;
    }
    for (; i < bufs.length; i++) {
      const p = this.packets[this.next];
      this.next = this.next + 1 === this.packets.length ? 0 : this.next + 1;
      bufs[i].set(p, offset);
      sizes[i] = p.length;
    }
    return bufs.length;
  }

  write(bufs: Uint8Array[], sizes: number[], offset: number): number {
    if (this.probeInBatch) {
      const at = process.hrtime.bigint();
      this.probeInBatch = false;
      // The probe is packet 0 of the batch; a dropped probe would not be here, and the check below says so.
      const b = bufs[0];
      const dst = `${b[offset + 16]}.${b[offset + 17]}.${b[offset + 18]}.${b[offset + 19]}`;
      const m: ProbeSeen = { type: "probe", at: at.toString(), dst };
      parentPort!.postMessage(m);
    }
    return bufs.length;
  }

  wait(): boolean {
    return true;
  }

  close(): void {}
}

async function main(): Promise<void> {
  const dp = await Datapath.create({ conntrack: { tcpEntries: 1 << 16, otherEntries: 1024 }, lb: { services: 64, backends: 64 } });
  dp.services.upsertService(start.service);
  // Established flows: the handshake goes through the datapath once, then only ACKs circulate.
  const warm: Uint8Array[] = [];
  const load: Uint8Array[] = [];
  for (let i = 0; i < start.flows; i++) {
    const dst = i % 2 === 0 ? start.service.vip : "10.0.5.5";
    const sport = 10000 + (i % 50000);
    warm.push(packet4({ src: CLIENT(i), dst }).tcp({ sport, dport: start.service.port, flags: { syn: true } }));
    load.push(packet4({ src: CLIENT(i), dst }).tcp({ sport, dport: start.service.port, seq: 2, ack: 1, flags: { ack: true }, payload: new Uint8Array(64) }));
  }
  const warmDevice = new LoadDevice(warm);
  const clock = () => Number(process.hrtime.bigint() / 1_000_000_000n);
  const warmFwd = new Forwarder(dp, warmDevice, { batchSize: start.batchSize, clock });
  for (let i = 0; i < Math.ceil(warm.length / start.batchSize); i++) warmFwd.step();

  const device = new LoadDevice(load);
  const fwd: Forwarder = new Forwarder(dp, device, {
    batchSize: start.batchSize, clock,
    betweenBatches: () => {
      if (inbox.drain() > 0) device.armProbe();
      shared[1] = fwd.stats.packetsIn;
    },
  });
  const inbox = new CommandInbox(start.commands, new CommandApplier(dp, { clock, batches: () => fwd.stats.batches }));
  parentPort!.postMessage({ type: "ready" });
  fwd.run(() => shared[0] === 1);
  parentPort!.postMessage({ type: "stopped", packets: fwd.stats.packetsIn, dropped: fwd.stats.dropped });
}

main().catch((err) => parentPort!.postMessage({ type: "error", message: (err as Error).stack ?? String(err) }));
