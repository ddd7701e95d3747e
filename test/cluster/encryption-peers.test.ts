// The ESP path's peers from node records: other nodes with an IPv4 address and a pod CIDR, with the key index each advertises.
import { describe, expect, it } from "vitest";
import { peersFromNodes } from "../../host/cluster/encryption-peers.js";

describe("peersFromNodes", () => {
  it("leaves out itself and nodes without an IPv4 address or pod CIDR", () => {
    const node = (name: string, ip: string, cidr?: string) => ({ name, cluster: "default", addresses: [{ type: "InternalIP" as const, ip }], encryptionKey: 2, ...(cidr ? { ipv4AllocCidr: cidr } : {}) });
    expect(peersFromNodes("a", [node("a", "192.0.2.1", "10.1.0.0/24"), node("b", "192.0.2.2", "10.2.0.0/24"), node("c", "fd00::3", "10.3.0.0/24"), node("d", "192.0.2.4")]))
      .toEqual([{ name: "b", address: "192.0.2.2", cidrs: ["10.2.0.0/24"], keyIndex: 2 }]);
  });
});
