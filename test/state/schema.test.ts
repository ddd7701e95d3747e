// The state file is validated once against one schema for the whole file: each section's keys checked by its
// own validator, unknown keys refused, and every message names the file and the key path from the top.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { run } from "../../host/cli/main.js";
import { loadState } from "../../host/state/file.js";
import { STATE_KEYS } from "../../host/state/schema.js";

const dir = mkdtempSync(join(tmpdir(), "membrane-state-schema-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
function file(content: unknown): string {
  const p = join(dir, `state-${n++}.json`);
  writeFileSync(p, JSON.stringify(content));
  return p;
}

const WEB = { id: 1, labels: ["app=web"], ipv4: "10.0.0.1" };

describe("the policy key", () => {
  // issue 19 #1: a list among its values made the whole key count as the old form and be dropped unchecked.
  test.each([
    [{ ipcache: 0, extra: [] }, "policy.ipcache: expected an integer from 1 to"],
    [{ "1": [], ipcache: 0 }, "policy.1: unknown key (allowed: endpoints, ipcache, entries)"],
    [{ entries: 1 << 30, extra: [] }, "policy.entries: expected an integer from 1 to"],
    [{ bogus: [] }, "policy.bogus: unknown key (allowed: endpoints, ipcache, entries)"],
    [{ "1": [], colour: "red" }, "policy.1: unknown key"],
  ])("sizes and unknown keys are checked even when a value is a list: %j", (policy, message) => {
    const path = file({ endpoints: [WEB], policy });
    expect(() => loadState(path)).toThrow(`state file ${path}: ${message}`);
  });

  test("every command that reads the file refuses a bad size next to a list under policy", async () => {
    const path = file({ endpoints: [WEB], policy: { ipcache: 0, extra: [] } });
    for (const argv of [["endpoint", "list"], ["service", "list"], ["replay", join(import.meta.dirname, "../../examples/sample.pcap")]]) {
      const err: string[] = [];
      const code = await run([...argv, "--config", path], { out: () => {}, err: (l) => err.push(l) });
      expect(code).toBe(2);
      expect(err.join("\n")).toContain(`state file ${path}: policy.ipcache: expected an integer from 1 to`);
    }
  });

  test("the older form (entries by endpoint id, nothing else) is ignored explicitly, with a warning", () => {
    const state = loadState(file({ endpoints: [WEB], policy: { "1": [], "2": [{ identity: 1 }] } }));
    expect(state.options.policy).toEqual({ endpoints: 1024, ipcache: 16384, entries: 16384 });
    expect(state.warnings).toEqual([expect.stringContaining("policy: policy entries by endpoint id (an older membrane's) are ignored")]);
  });

  test("table sizes are read as sizes", () => {
    expect(loadState(file({ policy: { ipcache: 64 } })).options.policy.ipcache).toBe(64);
  });
});

describe("one schema for the whole file", () => {
  test("a key no section owns is refused, naming the file and every allowed key", () => {
    const path = file({ conntrack: { tcpEntries: 1024 }, servics: [] });
    expect(() => loadState(path)).toThrow(`state file ${path}: servics: unknown key (allowed: ${STATE_KEYS.join(", ")})`);
    expect(STATE_KEYS).toEqual(expect.arrayContaining(["conntrack", "nat", "lb", "policy", "services", "endpoints", "policies", "identities", "ipcache", "policyEntries"]));
  });

  test.each([
    // a stored policy's errors carry their place in the file (issue 19: "[0].kind" for "policies[0].kind")
    [{ policies: [{ kind: "Nope" }] }, "policies[0].kind: expected NetworkPolicy"],
    [{ policies: [{ apiVersion: "cilium.io/v2", kind: "CiliumNetworkPolicy", metadata: { name: "a" }, spec: { endpointSelector: {}, ingress: [{ toPorts: [{ ports: [{ port: "99999" }] }] }] } }] }, "CiliumNetworkPolicy default/a: policies[0].spec.ingress[0].toPorts[0].ports[0].port"],
    [{ endpoints: [WEB, { id: "two", labels: [] }] }, "endpoints[1].id: must be an integer"],
    [{ endpoints: [WEB, { ...WEB, ipv4: "10.0.0.2" }] }, "endpoints[1].id: endpoint id 1 is already endpoints[0]"],
    [{ endpoints: [WEB, { id: 2, labels: ["app=db"], ipv4: "10.0.0.1" }] }, "endpoints[1]: "],
    [{ identities: [{ id: 0, labels: ["app=web"] }] }, "identities[0].id: expected a positive integer"],
    [{ ipcache: {} }, "ipcache: expected a list"],
    [{ policyEntries: [] }, "policyEntries: expected an object"],
    [{ services: [{ vip: "10.96.0.10", port: 80, proto: "tcp", backends: [{ addr: "10.0.2.1", port: 0 }] }] }, "services[0].backends[0].port"],
    [{ nat: { ipv4: { address: "nope" } } }, "nat.ipv4.address"],
    [{ conntrack: { timeouts: { tcp: "long" } } }, "conntrack.timeouts.tcp: expected an integer"],
  ])("%j -> names the key path", (content, message) => {
    const path = file(content);
    expect(() => loadState(path)).toThrow(`state file ${path}: ${message}`);
  });

  test("a state whose policy tables do not fit the configured sizes is refused on load, not first when programming", () => {
    const endpoints = [1, 2, 3].map((id) => ({ id, labels: [`app=e${id}`], ipv4: `10.0.0.${id}` }));
    const path = file({ policy: { endpoints: 2 }, endpoints });
    expect(() => loadState(path)).toThrow(/endpoints4 entries: 3 do not fit the wasm datapath's endpoints4 table \(2 entries; raise policy\.endpoints\)/);
    expect(loadState(file({ policy: { endpoints: 3 }, endpoints })).engine.listEndpoints()).toHaveLength(3);
  });

  test("a file that is not a JSON object is refused", () => {
    const path = file([1]);
    expect(() => loadState(path)).toThrow(`state file ${path}: expected a JSON object`);
  });
});
