/**
 * Which queue of a multi-queue TUN the kernel puts each packet on. Without a
 * program the kernel hashes every packet it transmits (the flow dissector)
 * and looks the hash up in a flow table that every packet written back into
 * the device updates, so replies go to the queue their flow was last written
 * from. membrane decides every queue's packets against one conntrack view and
 * does not need that; it costs the sending CPU and the forwarder's per packet,
 * and moves the table's cache lines between them. bpf/tun_steering.c replaces
 * it (TUNSETSTEERINGEBPF): a symmetric hash of addresses and ports, flows
 * spread over the queues, both directions of a flow on one queue, no table.
 *
 * It lives in host/kernel/ because it loads a BPF object (the house rule:
 * only kernel/ does). The program is optional: without its object (no clang at build time) or
 * when the kernel refuses it, the device keeps the kernel's steering and the
 * answer says why. MEMBRANE_TUN_STEERING=kernel keeps the kernel's on purpose
 * (benchmarks compare the two).
 */
import { existsSync, readFileSync } from "node:fs";
import { BpfObject } from "../bpf/object.js";
import { bpfObjectPath } from "../tools/build-bpf.js";
import { errnoName } from "../sys/errno.js";
import { libcTun } from "../tun/libc-tun.js";
import type { LinuxTun } from "../tun/linux-tun.js";
import { TUNSETSTEERINGEBPF } from "../tun/tun-abi.js";

export interface QueueSteering {
  /** "bpf": bpf/tun_steering.c picks the queue; "kernel": the kernel's flow table does. */
  by: "bpf" | "kernel";
  /** Why the kernel's steering was kept, when it was. */
  why?: string;
}

/** Attaches bpf/tun_steering.c to the device of `queues` (one ioctl on any queue sets it for the device). */
export function steerQueues(queues: readonly LinuxTun[]): QueueSteering {
  if (queues.length < 2) return { by: "kernel", why: "one queue" };
  if (process.env.MEMBRANE_TUN_STEERING === "kernel") return { by: "kernel", why: "MEMBRANE_TUN_STEERING=kernel" };
  const path = bpfObjectPath("tun_steering");
  if (!existsSync(path)) return { by: "kernel", why: `${path} not built (npm run build:bpf; needs clang)` };
  let object: BpfObject;
  try {
    object = BpfObject.load(readFileSync(path), { name: "tun_steering" });
  } catch (err) {
    return { by: "kernel", why: `loading bpf/tun_steering.c failed: ${(err as Error).message}` };
  }
  try {
    const fd = new Uint8Array(4);
    new DataView(fd.buffer).setInt32(0, object.program("tun_steering").fd, true);
    const c = libcTun();
    if (c.ioctlPtr(queues[0]!.fd, TUNSETSTEERINGEBPF, fd) < 0) return { by: "kernel", why: `TUNSETSTEERINGEBPF on ${queues[0]!.name}: ${errnoName(c.errno())}` };
    return { by: "bpf" };
  } catch (err) {
    return { by: "kernel", why: `bpf/tun_steering.c: ${(err as Error).message}` };
  } finally {
    // The device holds its own reference to the program from the ioctl on; ours can go.
    object.close();
  }
}
