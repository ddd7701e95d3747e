/**
 * End to end: a running TUN forwarder (ForwarderHandle: worker thread, real
 * TUN device, Wasm datapath) between network namespaces takes changes over
 * its command channel without a restart, while real TCP connections run
 * through it:
 * - a new service: connections to its VIP reach a pod2 backend;
 * - a backend removal: the connection already open to the backend that stays
 *   carries on, echo after echo; every new connection meets that backend;
 * - a policy flip: the connection open on the port the old policy allowed
 *   carries on (policy is decided once per flow); a new one on that port is
 *   dropped (DROP_POLICY in the worker's counters), a new one on the newly
 *   allowed port connects;
 * - a refused change (a service over capacity) says why and traffic is as it was.
 *
 * Topology: host/demo/topology.ts, namespaces named mbrl<pid>-* (the
 * forwarder suite's are mbrf<pid>-*). See test/e2e/forwarder.test.ts.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import type { ForwarderHandle } from "../../host/forwarder/controller.js";
import type { DatapathOptions } from "../../host/config.js";
import type { ForwarderTopology } from "../../host/demo/topology.js";
import { demoUnavailable } from "../../host/demo/requirements.js";
import { SERVICE_TCP_PORT, SERVICE_VIP4 } from "../../host/demo/services.js";
import { PolicyEngine } from "../../host/policy/engine.js";
import { cnp, ep } from "../policy/helpers.js";
import { describeIf } from "../support/describe-if.js";
import { waitFor } from "../support/wait-for.js";
import { ForwarderLab } from "./forwarder-lab.js";

const PREFIX = `mbrl${process.pid}`;
const OPTIONS: DatapathOptions = { conntrack: { tcpEntries: 4096, otherEntries: 4096 }, lb: { services: 16, backends: 8 } };
const BACKENDS = [8080, 8081];
/** Echoes of the long connections: long enough to span a change (100 ms apart, within the agent's 8 s limit). */
const STREAM = 30;

describeIf("a running TUN forwarder takes changes between namespaces", demoUnavailable(), () => {
  const lab = new ForwarderLab(PREFIX);
  let topo: ForwarderTopology | undefined;
  let fwd: ForwarderHandle | undefined;
  const latest = () => lab.latest();
  const policyDrops = () => latest()?.counters.drops.find((d) => d.reason === "DROP_POLICY")?.packets ?? 0;

  beforeAll(async () => {
    await lab.open({}, async () => {
      topo = lab.topo;
      fwd = await lab.start({ options: OPTIONS });
    });
  }, 30_000);

  afterAll(() => lab.close(), 30_000);

  const service = (ports: number[]) => ({ vip: SERVICE_VIP4, port: SERVICE_TCP_PORT, proto: "tcp" as const, backends: ports.map((port) => ({ addr: topo!.pod2.v4, port })) });

  it("a new service, then a backend removal: the open connection carries on, new ones meet the backend that stays", async () => {
    const { pod1, pod2 } = topo!;
    const servers = BACKENDS.map((port) => topo!.agent(pod2, ["tcp-echo", pod2.v4, port]));
    await Promise.all(servers.map((s) => s.ready()));
    expect(await fwd!.apply({ kind: "services", upsert: [service(BACKENDS)] })).toMatchObject({ ok: true, summary: "services: 1 upserted, 0 deleted" });

    const stream = topo!.agent(pod1, ["tcp-stream", SERVICE_VIP4, SERVICE_TCP_PORT, STREAM, 100]);
    const { localPort } = await stream.waitLine<{ localPort: number }>("the stream's connection", (l) => (l as { connected?: boolean }).connected === true);
    await stream.waitLine("the first echo", (l) => (l as { echo?: number }).echo === 1);
    const serving = await waitFor("the backend serving the stream", () => {
      const i = servers.findIndex((s) => s.lines.some((l) => (l as { peer?: { port: number } }).peer?.port === localPort));
      return i >= 0 ? BACKENDS[i] : undefined;
    }, { timeoutMs: 5_000 });

    // Remove the other backend while the stream runs.
    const removed = await fwd!.apply({ kind: "services", upsert: [service([serving])] });
    expect(removed).toMatchObject({ ok: true });
    const echoesAtChange = stream.lines.filter((l) => (l as { echo?: number }).echo !== undefined).length;
    expect(echoesAtChange).toBeLessThan(STREAM);

    // New connections, all to the backend that stays.
    for (let i = 0; i < 4; i++) {
      const c = await topo!.agent(pod1, ["tcp-stream", SERVICE_VIP4, SERVICE_TCP_PORT, 1, 10]).result<{ echoed: number; localPort: number }>(8_000);
      expect(c.echoed).toBe(1);
      const at = await waitFor(`the backend of connection ${c.localPort}`, () => {
        const k = servers.findIndex((s) => s.lines.some((l) => (l as { peer?: { port: number } }).peer?.port === c.localPort));
        return k >= 0 ? BACKENDS[k] : undefined;
      }, { timeoutMs: 5_000 });
      expect(at).toBe(serving);
    }
    // The stream got every echo, in order, with no reset, across the change.
    expect(await stream.result<{ echoed: number }>(10_000)).toMatchObject({ sent: STREAM, echoed: STREAM, localPort });
    for (const s of servers) s.kill();
  });

  it("a policy flip: the open connection carries on, a new one on the old port is dropped, the new port connects", async () => {
    const { pod1, pod2 } = topo!;
    const [OLD, NEW] = [7801, 7802];
    const engine = new PolicyEngine();
    const allow = (port: number) => cnp("web", { endpointSelector: { matchLabels: { app: "web" } }, egress: [{ toEndpoints: [{ matchLabels: { app: "db" } }], toPorts: [{ ports: [{ port: String(port), protocol: "TCP" }] }] }] });
    for (const change of [
      engine.upsertEndpoint(ep(1, { app: "web" }, { ipv4: pod1.v4, ipv6: undefined })),
      engine.upsertEndpoint(ep(2, { app: "db" }, { ipv4: pod2.v4, ipv6: undefined })),
      engine.importPolicies([allow(OLD)]),
    ]) expect(await fwd!.apply({ kind: "policy", change })).toMatchObject({ ok: true });

    const servers = [OLD, NEW].map((port) => topo!.agent(pod2, ["tcp-echo", pod2.v4, port]));
    await Promise.all(servers.map((s) => s.ready()));
    const stream = topo!.agent(pod1, ["tcp-stream", pod2.v4, OLD, STREAM, 100]);
    await stream.waitLine("the first echo", (l) => (l as { echo?: number }).echo === 1);

    const dropsBefore = policyDrops();
    expect(await fwd!.apply({ kind: "policy", change: engine.importPolicies([allow(NEW)]) })).toMatchObject({ ok: true });

    const fresh = await topo!.agent(pod1, ["tcp-stream", pod2.v4, NEW, 1, 10]).result<{ echoed: number }>(8_000);
    expect(fresh.echoed).toBe(1);
    // A new connection on the old port: its SYNs are dropped by policy (counted), it never connects.
    const denied = topo!.agent(pod1, ["tcp-stream", pod2.v4, OLD, 1, 10]);
    await waitFor("DROP_POLICY in the forwarder's counters", () => policyDrops() > dropsBefore, {
      timeoutMs: 5_000,
      detail: () => JSON.stringify(latest()?.counters.drops),
    });
    expect(denied.lines.some((l) => (l as { connected?: boolean }).connected)).toBe(false);
    denied.kill();

    expect(await stream.result<{ echoed: number }>(10_000)).toMatchObject({ sent: STREAM, echoed: STREAM });
    // Back to no policy: nothing selected, nothing enforced, for the tests after this one.
    expect(await fwd!.apply({ kind: "policy", change: engine.deleteAllPolicies() })).toMatchObject({ ok: true });
    for (const s of servers) s.kill();
  });

  it("a refused change says why, and the service works as before", async () => {
    const { pod1, pod2 } = topo!;
    const tooMany = { ...service([]), backends: Array.from({ length: 9 }, (_, i) => ({ addr: pod2.v4, port: 9000 + i })) };
    const refused = await fwd!.apply({ kind: "services", upsert: [tooMany] });
    expect(refused).toMatchObject({ ok: false, code: "INVALID_INPUT", message: expect.stringMatching(/^services\.upsert\[0\]: .*the backends table would need 9 entries; it has 8/) });
    // The service is as the first test left it: one of BACKENDS, whichever served that stream.
    const servers = BACKENDS.map((port) => topo!.agent(pod2, ["tcp-echo", pod2.v4, port]));
    await Promise.all(servers.map((s) => s.ready()));
    const c = await topo!.agent(pod1, ["tcp-stream", SERVICE_VIP4, SERVICE_TCP_PORT, 1, 10]).result<{ echoed: number }>(8_000);
    expect(c.echoed).toBe(1);
    for (const s of servers) s.kill();
  });
});
