/**
 * Entering a network namespace for the duration of a synchronous call.
 * setns(2) moves only the calling thread, and the call is synchronous, so
 * nothing else on this thread runs in between; what the call creates
 * (tc filters, netlink requests, sockets, a TUN device) belongs to that
 * namespace, and /proc/sys/net opened meanwhile is that namespace's.
 */
import { statSync, writeFileSync } from "node:fs";
import { CLONE_NEWNET, libc, O_CLOEXEC, O_RDONLY } from "../libc.js";
import { errnoName } from "../errno.js";
import { MembraneError } from "../../errors.js";

const THREAD_NETNS = "/proc/thread-self/ns/net";

/**
 * The calling thread's network namespace as a string that tells namespaces
 * apart (device and inode of its nsfs file), e.g. to key per-interface state
 * by namespace and ifindex: ifindexes repeat across namespaces.
 */
export function currentNetnsId(): string {
  const st = statSync(THREAD_NETNS);
  return `${st.dev}:${st.ino}`;
}

/** An fd on the calling thread's network namespace (O_CLOEXEC), to come back to it with withNetnsFd. Close it when done. */
export function openCurrentNetns(): number {
  const c = libc();
  const fd = c.open(THREAD_NETNS, O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw new Error(`open ${THREAD_NETNS}: errno ${c.errno()}`);
  return fd;
}

/** Runs `fn` with this thread in network namespace `name` (/run/netns/<name>), then returns to where it was. */
export function withNetns<T>(name: string, fn: () => T): T {
  const c = libc();
  const target = c.open(`/run/netns/${name}`, O_RDONLY | O_CLOEXEC);
  if (target < 0) throw new Error(`open /run/netns/${name}: errno ${c.errno()}`);
  try {
    return withNetnsFd(target, name, fn);
  } finally {
    c.close(target);
  }
}

/** Runs `fn` with this thread in the network namespace that fd `target` refers to (`name` is for messages), then returns. */
export function withNetnsFd<T>(target: number, name: string, fn: () => T): T {
  const c = libc();
  const self = openCurrentNetns();
  try {
    if (c.setns(target, CLONE_NEWNET) !== 0) throw new Error(`enter network namespace ${name}: errno ${c.errno()}`);
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

/**
 * Runs `fn` in a new, empty network namespace that vanishes afterwards: the
 * way to try a kernel feature (a qdisc, an XFRM state) without touching any
 * real interface or table. Only this thread moves, and `fn` is synchronous,
 * so nothing else runs in the scratch namespace.
 */
export function withScratchNetns<T>(fn: () => T): T {
  const c = libc();
  const self = c.open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0) throw new MembraneError("NETNS", `open /proc/thread-self/ns/net: ${errnoName(c.errno())}`);
  try {
    if (c.unshare(CLONE_NEWNET) !== 0) {
      throw new MembraneError("NETNS", `create a scratch network namespace: ${errnoName(c.errno())} (needs root)`);
    }
    try {
      return fn();
    } finally {
      if (c.setns(self, CLONE_NEWNET) !== 0) {
        // Continuing in the wrong namespace would silently misdirect every later netlink call.
        throw new MembraneError("INTERNAL", `cannot return to the original network namespace (${errnoName(c.errno())})`);
      }
    }
  } finally {
    c.close(self);
  }
}
