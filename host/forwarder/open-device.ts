/**
 * The TUN device a forwarder worker forwards on: one queue, or several
 * (IFF_MULTI_QUEUE) read and written by an I/O thread per queue through rings
 * (RingTun, the default without offloads) or by this one worker through
 * MultiQueueTun; either way every queue's packets are decided against one datapath
 * and one conntrack view (docs/forwarder.md, "More than one queue").
 */
import type { TunDevice } from "../tun/device.js";
import { linuxQueueWaiter, openTun, openTunQueues, type OpenTunOptions } from "../tun/linux-tun.js";
import { MultiQueueTun } from "../tun/multi-queue.js";
import { RingTun } from "../tun/ring-tun.js";
import type { WorkerStart } from "./protocol.js";

/** The TUN I/O mode a device opened here uses (LinuxTun, RingTun, MultiQueueTun all say), for the ready message. */
export function deviceTunIo(device: TunDevice): string | undefined {
  return "io" in device && typeof device.io === "string" ? device.io : undefined;
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
  // The default for several queues without offloads: the syscalls on a thread per queue (ring-tun.ts).
  // With offloads a slot would hold a 64 KiB super-packet and the copies would cost more than the syscalls save.
  if (!offloads && device.ioWorkers !== false) return new RingTun(openTunQueues(options, queues));
  return new MultiQueueTun(openTunQueues(options, queues), linuxQueueWaiter);
}
