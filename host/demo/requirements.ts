/** What the namespace demo (and its end-to-end test) needs from the machine. */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { packageRoot } from "../package-root.js";
import { iproute2Unavailable } from "../sys/netns/iproute2.js";
import { agentMissing } from "./agents.js";

/** Why the demo cannot run here, or undefined. */
export function demoUnavailable(): string | undefined {
  if (process.platform !== "linux") return `network namespaces and TUN devices need Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return "not running as root (network namespaces, veths and a TUN device need CAP_NET_ADMIN)";
  if (!existsSync("/dev/net/tun")) return "/dev/net/tun is missing (modprobe tun; in a container: --device /dev/net/tun --cap-add NET_ADMIN)";
  const ip = iproute2Unavailable();
  if (ip) return ip;
  const worker = join(packageRoot(), "dist/host/forwarder/worker.js");
  if (!existsSync(worker)) return `${worker} is missing: run npm run build`;
  return agentMissing();
}
