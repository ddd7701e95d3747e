// Direct routes toward other nodes' pods: over the underlay via each node's address, or, with
// encryption on, into the TUN device whose ESP path seals them (never past it in the clear).
import { describe, expect, it } from "vitest";
import { computeRoutes } from "../../host/cluster/routes.js";
import type { NodeRecord } from "../../host/kvstore/records/node.js";

const node = (name: string, ips: string[], v4?: string, v6?: string): NodeRecord => ({
  name, cluster: "default", encryptionKey: 3,
  addresses: ips.map((ip) => ({ type: "InternalIP" as const, ip })),
  ...(v4 ? { ipv4AllocCidr: v4 } : {}), ...(v6 ? { ipv6AllocCidr: v6 } : {}),
});
const nodes = [
  node("a", ["192.0.2.1"], "10.1.0.0/24"),
  node("b", ["192.0.2.2", "fd00::2"], "10.2.0.0/24", "fd10:2::/64"),
  node("c", ["fd00::3"], undefined, "fd10:3::/64"), // no IPv4 address: not an ESP peer
];
// A pod of b's outside its CIDR, as the ipcache says.
const ipcache = [{ prefix: "10.9.0.7/32", identity: 1234, hostIp: "192.0.2.2", encryptionKey: 3 }];

describe("computeRoutes", () => {
  it("without encryption: every remote pod CIDR (and stray pod) via the node's address on the underlay", () => {
    expect(computeRoutes("a", nodes, ipcache)).toEqual([
      { prefix: "10.2.0.0/24", via: "192.0.2.2", node: "b" },
      { prefix: "10.9.0.7/32", via: "192.0.2.2", node: "b" },
      { prefix: "fd10:2::/64", via: "fd00::2", node: "b" },
      { prefix: "fd10:3::/64", via: "fd00::3", node: "c" },
    ]);
  });

  it("with encryption: an ESP peer's pod CIDRs (both families) go into the TUN device; what the ESP path cannot seal stays on the underlay", () => {
    const routes = computeRoutes("a", nodes, ipcache, { encryptInto: "mbr0" });
    expect(routes).toEqual([
      { prefix: "10.2.0.0/24", via: "192.0.2.2", node: "b", device: "mbr0" },
      { prefix: "10.9.0.7/32", via: "192.0.2.2", node: "b" },
      { prefix: "fd10:2::/64", via: "fd00::2", node: "b", device: "mbr0" },
      { prefix: "fd10:3::/64", via: "fd00::3", node: "c" },
    ]);
  });
});
