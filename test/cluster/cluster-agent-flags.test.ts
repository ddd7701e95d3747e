/** Cluster mode's flags (host/cli/cluster-agent.ts): checked whole before anything is opened, each error naming its flag. */
import { afterAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { clusterAgentFlags, isClusterMode } from "../../host/cli/cluster-agent.js";

describe("membrane agent --kvstore --node flags", () => {
  it("takes a node, its addresses, pod CIDRs and key index", () => {
    expect(isClusterMode({ node: "a" })).toBe(true);
    expect(isClusterMode({ kvstore: "embedded" })).toBe(true);
    expect(isClusterMode({ config: "x.json" })).toBe(false);
    expect(clusterAgentFlags({ node: "node-a", nodeIp: ["10.0.0.1", "fd00::1"], podCidr: ["10.1.0.0/24", "fd01::/64"], encryptionKey: "3" })).toEqual({
      node: "node-a",
      addresses: [{ type: "InternalIP", ip: "10.0.0.1" }, { type: "InternalIP", ip: "fd00::1" }],
      ipv4AllocCidr: "10.1.0.0/24",
      ipv6AllocCidr: "fd01::/64",
      encryptionKey: 3,
      routeDevice: undefined,
    });
  });

  it.each([
    [{ node: "a", nodeIp: ["10.0.0.1"], config: "s.json" }, "--config and --node/--kvstore exclude each other"],
    [{ kvstore: "embedded", nodeIp: ["10.0.0.1"] }, "--node <name> is required"],
    [{ node: "Node_A", nodeIp: ["10.0.0.1"] }, "--node Node_A: expected a DNS-style name"],
    [{ node: "a" }, "--node-ip <address> is required"],
    [{ node: "a", nodeIp: ["10.0.0.300"] }, "--node-ip 10.0.0.300:"],
    [{ node: "a", nodeIp: ["10.0.0.1", "10.0.0.2"] }, "--node-ip 10.0.0.2: a second IPv4 address"],
    [{ node: "a", nodeIp: ["10.0.0.1"], podCidr: ["10.1.0.1/24"] }, "--pod-cidr 10.1.0.1/24"],
    [{ node: "a", nodeIp: ["10.0.0.1"], encryptionKey: "16" }, "--encryption-key: expected 0..15"],
  ])("refuses %j naming the flag", (flags, message) => {
    expect(() => clusterAgentFlags(flags as Record<string, string | string[]>)).toThrow(message);
  });

  describe("--datapath-options (the state file's datapath section: nat)", () => {
    const dir = mkdtempSync(join(tmpdir(), "dm-flags-"));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));
    const file = (name: string, body: unknown) => {
      const path = join(dir, name);
      writeFileSync(path, JSON.stringify(body));
      return path;
    };

    it("takes masquerading per family, validated as in a state file", () => {
      const path = file("ok.json", { nat: { ipv4: { address: "10.0.0.1", clusterCidrs: ["10.1.0.0/24"] }, ipv6: { address: "fd00::1" }, ports: { min: 1024, max: 65534 } } });
      const { options } = clusterAgentFlags({ node: "a", nodeIp: ["10.0.0.1"], datapathOptions: path });
      expect(options?.nat).toMatchObject({ ipv4: { address: "10.0.0.1", clusterCidrs: ["10.1.0.0/24"], excludedCidrs: [] }, ipv6: { address: "fd00::1" }, ports: { min: 1024, max: 65534 } });
      expect(clusterAgentFlags({ node: "a", nodeIp: ["10.0.0.1"] }).options).toBeUndefined();
    });

    it("refuses a bad file naming the file and the key", () => {
      const v6 = file("v6.json", { nat: { ipv4: { address: "fd00::1" } } });
      expect(() => clusterAgentFlags({ node: "a", nodeIp: ["10.0.0.1"], datapathOptions: v6 })).toThrow(`${v6}: nat.ipv4.address: expected an IPv4 address`);
      const unknown = file("unknown.json", { services: [] });
      expect(() => clusterAgentFlags({ node: "a", nodeIp: ["10.0.0.1"], datapathOptions: unknown })).toThrow(`${unknown}: services: unknown key`);
      expect(() => clusterAgentFlags({ node: "a", nodeIp: ["10.0.0.1"], datapathOptions: join(dir, "missing.json") })).toThrow("missing.json");
    });
  });
});
