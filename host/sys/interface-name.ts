/**
 * The name of the interface with a given ifindex in this process's network
 * namespace, from sysfs (under `ip netns exec`, /sys is the namespace's own).
 * The kernel agent uses it to find an endpoint's host-side veth from the
 * ifindex its state record carries, as Cilium's CNI plugin hands it over.
 */
import { readdirSync, readFileSync } from "node:fs";

const SYS_NET = "/sys/class/net";

export function interfaceNameOf(ifindex: number): string | undefined {
  let names: string[];
  try {
    names = readdirSync(SYS_NET);
  } catch {
    return undefined;
  }
  for (const name of names) {
    try {
      if (Number(readFileSync(`${SYS_NET}/${name}/ifindex`, "utf8").trim()) === ifindex) return name;
    } catch {
      // gone while we looked: not the one
    }
  }
  return undefined;
}
