// What the TUN tests need, and the project's skip-or-fail rule around it:
// outside CI a missing piece skips the suite with a printed reason; with
// CI=true the suite fails instead, because there a missing install step is a bug.
import { execFileSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { ip, netnsExists, netnsList, withNetns } from "../../host/sys/netns/index.js";
import { openTun, type LinuxTun } from "../../host/tun/linux-tun.js";
import type { TunIoMode } from "../../host/tun/tun-io-choice.js";
import { tunNativeLibraryPath } from "../../host/sys/tun-native.js";

export function hasCommand(cmd: string, args = ["--version"]): boolean {
  try {
    execFileSync(cmd, args, { stdio: "ignore", timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

/** Why a real TUN in a scratch namespace cannot be made here, or undefined. */
export function missingTun(): string | undefined {
  if (process.platform !== "linux") return `TUN devices need Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return "not running as root (creating TUN devices and network namespaces needs CAP_NET_ADMIN)";
  if (!existsSync("/dev/net/tun")) return "/dev/net/tun is missing (modprobe tun; in a container: --device /dev/net/tun)";
  if (!hasCommand("ip", ["-V"])) return "iproute2 is not installed (apt-get install iproute2)";
  return undefined;
}

/** Why the header-comparison program cannot be built here, or undefined. */
export function missingCc(): string | undefined {
  if (!hasCommand("cc")) return "no host C compiler (cc)";
  if (!existsSync("/usr/include/linux/if_tun.h")) return "kernel headers are not installed (linux-libc-dev: <linux/if_tun.h> missing)";
  return undefined;
}

export { describeIf } from "../support/describe-if.js";

/**
 * Makes network namespace `ns` for TUN tests: IPv6 off, loopback up. IPv6
 * would put router solicitations and MLD reports on the TUNs (addrconf
 * configures ARPHRD_NONE links too); the tests' batch counts must see only
 * the datagrams they send. /proc/sys/net is the opener's namespace, and
 * writeFileSync opens on this thread.
 */
export function scratchNetns(ns: string): void {
  removeOrphanedNamespaces(ns);
  ip("netns", "add", ns);
  withNetns(ns, () => {
    writeFileSync("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
    writeFileSync("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
  });
  ip("-n", ns, "link", "set", "lo", "up");
}

/** Why the native TUN library (native/tun_io.c) cannot be used in this run, or undefined. */
export function missingNativeTun(): string | undefined {
  if (process.env.MEMBRANE_TUN_NATIVE === "0") return "MEMBRANE_TUN_NATIVE=0: the native TUN library is off in this run";
  return existsSync(tunNativeLibraryPath()) ? undefined : `${tunNativeLibraryPath()} not built (npm run build:native)`;
}

/**
 * Scratch namespace `ns` with forwarding on and, for each I/O mode, a pair of
 * TUNs `<prefix>a<m>` (written into) and `<prefix>b<m>` (what the kernel routes
 * out, read back; its queue holds a whole test batch).
 */
export function openTunPairs(ns: string, prefix: string, modes: readonly TunIoMode[]): Map<TunIoMode, { a: LinuxTun; b: LinuxTun }> {
  scratchNetns(ns);
  withNetns(ns, () => writeFileSync("/proc/sys/net/ipv4/ip_forward", "1"));
  const pairs = new Map<TunIoMode, { a: LinuxTun; b: LinuxTun }>();
  modes.forEach((mode, m) => {
    const a = withNetns(ns, () => openTun({ name: `${prefix}a${m}`, mtu: 1500, io: mode }));
    const b = withNetns(ns, () => openTun({ name: `${prefix}b${m}`, mtu: 1500, io: mode }));
    ip("-n", ns, "link", "set", b.name, "txqueuelen", "2000");
    pairs.set(mode, { a, b });
  });
  return pairs;
}

/** Closes every pair's TUNs and removes `ns`; the namespace must be gone afterwards. */
export function closeTunPairs(ns: string, pairs: Iterable<{ a: LinuxTun; b: LinuxTun }>): void {
  for (const { a, b } of pairs) {
    a.close();
    b.close();
  }
  if (netnsExists(ns)) ip("netns", "del", ns);
  if (netnsExists(ns)) throw new Error(`network namespace ${ns} is still there after ip netns del`);
}

/**
 * Scratch namespaces are named "<stem><pid>" after the test process that made
 * them, and its afterAll removes them; a vitest worker that is killed never
 * runs afterAll. Before making `ns`, this removes the namespaces of the same
 * stem whose process is gone, and a leftover of `ns` itself (an earlier
 * process that had our pid). A namespace whose process still runs belongs
 * to a test running now (another checkout's suite) and is left alone.
 */
export function removeOrphanedNamespaces(ns: string): void {
  const m = /^(.*?)(\d+)$/.exec(ns);
  if (!m) return;
  const stem = m[1]!;
  for (const other of netnsList()) {
    if (!other.startsWith(stem)) continue;
    const pidText = other.slice(stem.length);
    if (!/^\d+$/.test(pidText)) continue;
    if (other === ns || !processAlive(Number(pidText))) ip("netns", "del", other);
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
