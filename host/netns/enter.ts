/**
 * Entering a network namespace for the duration of a synchronous call.
 * setns(2) moves only the calling thread, and the call is synchronous, so
 * nothing else on this thread runs in between; what the call creates
 * (tc filters, netlink requests, sockets, a TUN device) belongs to that
 * namespace, and /proc/sys/net opened meanwhile is that namespace's.
 */
import { writeFileSync } from "node:fs";
import { CLONE_NEWNET, libc, O_CLOEXEC, O_RDONLY } from "../bpf/libc.js";

/** Runs `fn` with this thread in network namespace `name` (/run/netns/<name>), then returns to where it was. */
export function withNetns<T>(name: string, fn: () => T): T {
  const c = libc();
  const self = c.open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0) throw new Error(`open /proc/thread-self/ns/net: errno ${c.errno()}`);
  try {
    const target = c.open(`/run/netns/${name}`, O_RDONLY | O_CLOEXEC);
    if (target < 0) throw new Error(`open /run/netns/${name}: errno ${c.errno()}`);
    try {
      if (c.setns(target, CLONE_NEWNET) !== 0) throw new Error(`enter network namespace ${name}: errno ${c.errno()}`);
    } finally {
      c.close(target);
    }
    try {
      return fn();
    } finally {
      if (c.setns(self, CLONE_NEWNET) !== 0) {
        // Carrying on would send every later netlink call to the wrong namespace: fail loudly instead.
        throw new Error(`cannot return to the original network namespace (errno ${c.errno()})`);
      }
    }
  } finally {
    c.close(self);
  }
}

/**
 * Sets a sysctl in namespace `ns`: `key` as sysctl(8) writes it
 * ("net.ipv4.ip_forward"), or as a path under /proc/sys when an interface
 * name in it has a dot ("net/ipv4/conf/eth0.1/rp_filter").
 */
export function setSysctl(ns: string, key: string, value: string | number): void {
  const path = `/proc/sys/${key.includes("/") ? key : key.replace(/\./g, "/")}`;
  withNetns(ns, () => {
    try {
      writeFileSync(path, `${value}\n`);
    } catch (err) {
      throw new Error(`sysctl ${key}=${value} in ${ns}: ${(err as Error).message}`, { cause: err });
    }
  });
}
