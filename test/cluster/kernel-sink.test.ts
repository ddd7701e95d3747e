/**
 * The kernel datapath as the cluster agent core's sink: services and a
 * policy change from the core land in the node's pinned maps (LB listing,
 * endpoint, ipcache and policy records), a service removed is gone, and a
 * removed endpoint takes its records with it. No device here: endpoints
 * without one get map records only (the namespace tests attach programs).
 */
import { rmSync } from "node:fs";
import { dirname } from "node:path";
import { afterAll, expect, it } from "vitest";
import { resolveOptions } from "../../host/config.js";
import { KernelSink } from "../../host/cluster/kernel-sink.js";
import { KernelAgentDatapath } from "../../host/kernel/agent-datapath.js";
import { readLbListing } from "../../host/lb/listing.js";
import type { EngineChange } from "../../host/policy/engine.js";
import { describeIf } from "../support/describe-if.js";
import { templateUnavailable, tempTemplatesDir } from "../kernel/template-env.js";

const PIN_DIR = `/sys/fs/bpf/membrane-test-kasink${process.pid}`;
const OPTIONS = resolveOptions({ conntrack: { tcpEntries: 1024, otherEntries: 1024 }, policy: { endpoints: 16, ipcache: 64, entries: 64 } });
const templatesDir = tempTemplatesDir();

const change = (remove: boolean): EngineChange => ({
  endpoints: remove ? { upsert: [], remove: [7] } : { upsert: [{ id: 7, identity: 1300, ipv4: "10.7.0.7", ifindex: 0, mac: "02:00:00:00:00:07", enforceIngress: true, enforceEgress: false }], remove: [] },
  ipcache: remove ? { upsert: [], remove: [] } : { upsert: [{ cidr: "10.7.0.7/32", identity: 1300 }, { cidr: "10.8.0.0/16", identity: 1400 }], remove: [] },
  policy: remove ? { recomputed: [], changes: new Map() } : { recomputed: [7], changes: new Map([[7, { add: [{ identity: 1400, port: 80, proto: 6, direction: "ingress" as const, deny: false }], remove: [] }]]) },
  entriesComputed: 1,
});

describeIf("the kernel datapath as the cluster agent's sink", templateUnavailable(), () => {
  let kernel: KernelAgentDatapath | undefined;
  afterAll(() => {
    kernel?.stop({ keepPrograms: false });
    rmSync(PIN_DIR, { recursive: true, force: true });
    rmSync(dirname(templatesDir), { recursive: true, force: true });
  });

  it("puts the core's services and policy into the pinned maps, and takes them out again", async () => {
    kernel = await KernelAgentDatapath.start({ options: OPTIONS, pinDir: PIN_DIR, templatesDir, devices: new Map() });
    const seen: string[] = [];
    const sink = new KernelSink(kernel, undefined, {
      beforePolicy: () => seen.push("before"),
      afterPolicy: (c, programs) => seen.push(`after ${c.endpoints.upsert.length}+${c.endpoints.remove.length} ${programs.size}`),
    });
    const svc = { vip: "10.96.0.7", port: 80, proto: "tcp" as const, backends: [{ addr: "10.8.0.1", port: 8080 }, { addr: "10.8.0.2", port: 8080 }] };
    await sink.applyServices([svc], []);
    await sink.applyPolicy(change(false));
    const listing = readLbListing(kernel.lbTables());
    expect(listing.services.map((s) => [s.vip, s.port, s.slots.length])).toEqual([["10.96.0.7", 80, 2]]);
    expect(listing.backends.map((b) => b.addr).sort()).toEqual(["10.8.0.1", "10.8.0.2"]);
    const tables = kernel.policyTables();
    expect([tables.dump("endpoints4").length, tables.dump("ipcache4").length, tables.dump("policy").length]).toEqual([1, 2, 1]);
    expect(kernel.cache.stats.compiles).toBe(0); // no device, no instance: nothing compiled for map records
    expect(seen).toEqual(["before", "after 1+0 0"]); // the hooks around the change; no device, no program

    await sink.applyServices([], [svc]);
    await sink.applyPolicy(change(true));
    expect(readLbListing(kernel.lbTables()).services).toEqual([]);
    expect([tables.dump("endpoints4").length, tables.dump("policy").length]).toEqual([0, 0]);
    expect(seen.slice(2)).toEqual(["before", "after 0+1 0"]);
  }, 60_000);
});
