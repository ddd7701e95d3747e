// programDatapath: one state programs either engine (the Wasm core, the kernel program) with the same tables
// and the same warnings; replay prints those warnings. The state comes from the file, validated once.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { Datapath } from "../../host/datapath.js";
import { KernelDatapath } from "../../host/kernel/datapath.js";
import type { DatapathEngine } from "../../host/engine.js";
import { loadState } from "../../host/state/file.js";
import { datapathState } from "../../host/state/schema.js";
import { programDatapath } from "../../host/state/program.js";
import { POLICY_TABLE_NAMES } from "../../host/policy/tables.js";
import { readLbListing } from "../../host/lb/listing.js";
import { packet4 } from "../../host/packet/build.js";
import { decodePacket } from "../../host/packet/decode.js";
import { run } from "../../host/cli/main.js";
import { kernelUnavailable } from "../differential/kernel-available.js";
import { testIf } from "../support/describe-if.js";

const dir = mkdtempSync(join(tmpdir(), "membrane-state-program-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const VIP = "10.96.0.10", WEB = "10.0.1.10", DB = "10.0.1.20";
const state = join(dir, "state.json");
writeFileSync(state, JSON.stringify({
  conntrack: { tcpEntries: 1024, otherEntries: 1024 },
  fragments: { entries: 64 },
  hashSeed: 7,
  lb: { maglevM: 251, services: 64, backends: 64, revNat: 64, maglevRows: 4 },
  nat: { ipv4: { address: "192.0.2.1", clusterCidrs: ["10.0.1.0/24"] }, seed: 1, entries: 256 },
  policy: { endpoints: 16, ipcache: 64, entries: 256 },
  services: [{ vip: VIP, port: 80, proto: "tcp", algorithm: "maglev", backends: [{ addr: DB, port: 8080 }, { addr: "10.0.1.21", port: 8080 }, { addr: "10.0.1.22", port: 8080 }] }],
  endpoints: [{ id: 1, labels: ["app=web"], ipv4: WEB }, { id: 2, labels: ["app=db"], ipv4: DB }],
  policies: [{
    apiVersion: "cilium.io/v2", kind: "CiliumNetworkPolicy", metadata: { name: "web" },
    spec: { endpointSelector: { matchLabels: { app: "web" } }, egress: [{ toEndpoints: [{ matchLabels: { app: "db" } }], toPorts: [{ ports: [{ port: "8080", protocol: "TCP" }] }] }] },
  }],
}));

const syn = (dst: string, dport: number) => packet4({ src: WEB, dst }).tcp({ sport: 40000 + dport, dport, flags: { syn: true } });

/** What a programmed engine holds and decides: policy tables (sorted), the LB listing, two verdicts. */
function observe(dp: DatapathEngine) {
  const tables = Object.fromEntries(POLICY_TABLE_NAMES.map((t) => [t, dp.policyTables().dump(t).map(([k, v]) => Buffer.from(k).toString("hex") + ":" + Buffer.from(v).toString("hex")).sort()]));
  const toService = dp.decide(syn(VIP, 80), { link: "ip", direction: "egress", now: 100 });
  const denied = dp.decide(syn(DB, 22), { link: "ip", direction: "egress", now: 100 });
  return { tables, lb: readLbListing(dp.lbTables()), toService: [toService.verdict, decodePacket(toService.data, "ip").dport], denied: [denied.verdict, denied.dropReason] };
}

describe("programDatapath", () => {
  test("the Wasm core: services, NAT configuration and policy tables from the state, with the state's warnings", async () => {
    const s = datapathState(loadState(state));
    const dp = await Datapath.create(s.options);
    try {
      const warnings = programDatapath(dp, s);
      expect(warnings).toEqual([expect.stringContaining("Maglev table size 251 <= 100 x 3 backends")]);
      const seen = observe(dp);
      expect(seen.toService).toEqual(["pass", 8080]);
      expect(seen.denied).toEqual(["drop", "DROP_POLICY"]);
      expect(seen.tables.endpoints4).toHaveLength(2);
      expect(seen.lb.services.length).toBeGreaterThan(0);
      expect(dp.options.nat?.ipv4?.address).toBe("192.0.2.1");
    } finally {
      dp.close();
    }
  });

  test("a datapath created with other NAT options than the state's is refused, nothing programmed", async () => {
    const s = datapathState(loadState(state));
    const dp = await Datapath.create({ ...s.options, nat: undefined });
    try {
      expect(() => programDatapath(dp, s)).toThrow("program datapath: it was created with other nat options than the state's");
      expect(readLbListing(dp.lbTables()).services).toEqual([]);
      expect(dp.policyTables().dump("endpoints4")).toEqual([]);
    } finally {
      dp.close();
    }
  });

  test("replay prints the same warnings", async () => {
    const err: string[] = [];
    const code = await run(["replay", join(import.meta.dirname, "../../examples/sample.pcap"), "--config", state, "--gc", "off"], { out: () => {}, err: (l) => err.push(l) });
    expect(code).toBe(0);
    expect(err).toEqual([expect.stringMatching(/^membrane replay: .*Maglev table size 251 <= 100 x 3 backends/)]);
  });

  testIf("the kernel program gets the same tables and warnings, and decides the same", kernelUnavailable(), async () => {
    const s = datapathState(loadState(state));
    const wasm = await Datapath.create(s.options);
    const kernel = await KernelDatapath.create(s.options);
    try {
      expect(programDatapath(kernel, s)).toEqual(programDatapath(wasm, s));
      expect(observe(kernel)).toEqual(observe(wasm));
    } finally {
      wasm.close();
      kernel.close();
    }
  });
});
