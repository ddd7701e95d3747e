/**
 * The TUN device a forwarder worker forwards on: one queue, or several
 * (IFF_MULTI_QUEUE) read and written by an I/O thread per queue through rings
 * (RingTun, the default without offloads) or by this one worker through
 * MultiQueueTun; either way every queue's packets are decided against one datapath
 * and one conntrack view (docs/forwarder.md, "More than one queue").
 */
import { availableParallelism } from "node:os";
import type { TunDevice } from "../tun/device.js";
import { linuxQueueWaiter, openTun, openTunQueues, type OpenTunOptions } from "../tun/linux-tun.js";
import { MultiQueueTun } from "../tun/multi-queue.js";
import { RingTun } from "../tun/ring-tun.js";
import { steerQueues, type QueueSteering } from "../kernel/tun-steering.js";
import type { WorkerStart } from "./protocol.js";

/** How the queues of each several-queue device opened here are steered (kernel/tun-steering.ts). */
const steeringOf = new WeakMap<TunDevice, QueueSteering>();

/**
 * The TUN I/O mode a device opened here uses (LinuxTun, RingTun, MultiQueueTun
 * all say), who moves several queues and who steers packets onto them, for the
 * ready message.
 */
export function deviceTunIo(device: TunDevice): string | undefined {
  const io = "io" in device && typeof device.io === "string" ? device.io : undefined;
  const movers = device instanceof RingTun ? `${device.queueReads().length} queues, an I/O thread each` : device instanceof MultiQueueTun ? `${device.queues.length} queues, one thread` : undefined;
  const s = steeringOf.get(device);
  const steering = s && (s.by === "bpf" ? "steered by bpf/tun_steering.c" : `steered by the kernel's flow table (${s.why})`);
  return [io, movers, steering].filter((x) => x !== undefined).join("; ") || undefined;
}

/**
 * Whether several queues without offloads get an I/O thread each (RingTun) or
 * are all read and written by the deciding worker (MultiQueueTun). The threads
 * pay only when each has a CPU of its own: queues + 1 busy threads on fewer CPUs
 * take CPU from one another and from whatever sends the traffic, and the ring
 * hand-off costs more than the syscalls it moves. On this project's 2-CPU machine,
 * 2 queues: one thread 0.96x the C loop, I/O threads 0.71x, side by side
 * (docs/forwarder.md, "Who moves the queues"). An explicit choice always wins.
 */
export function useIoWorkers(device: WorkerStart["device"], cpus = availableParallelism()): boolean {
  const queues = device.queues ?? 1;
  if (queues === 1 || (device.offloads ?? false)) return false;
  return device.ioWorkers ?? cpus > queues;
}

export function openForwarderDevice(device: WorkerStart["device"]): TunDevice {
  const offloads = device.offloads ?? false;
  const options: OpenTunOptions = {
    name: device.name, mtu: device.mtu, vnetHdr: offloads,
    offloads: offloads ? { csum: true, tso: true, uso: true } : undefined,
    io: device.io,
  };
  const queues = device.queues ?? 1;
  if (queues === 1) return openTun(options);
  const opened = openTunQueues(options, queues);
  const steering = steerQueues(opened);
  // With offloads a slot would hold a 64 KiB super-packet and the copies would cost more than the syscalls save.
  const tun = useIoWorkers(device) ? new RingTun(opened) : new MultiQueueTun(opened, linuxQueueWaiter);
  steeringOf.set(tun, steering);
  return tun;
}
