// What the TUN tests need, and the project's skip-or-fail rule around it:
// outside CI a missing piece skips the suite with a printed reason; with
// CI=true the suite fails instead, because there a missing install step is a bug.
import { execFileSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { ip, withNetns } from "../../host/sys/netns/index.js";

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
  ip("netns", "add", ns);
  withNetns(ns, () => {
    writeFileSync("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
    writeFileSync("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
  });
  ip("-n", ns, "link", "set", "lo", "up");
}
