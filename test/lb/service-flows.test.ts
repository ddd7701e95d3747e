// Flows per service backend, from conntrack: what the forwarder reports and the live view shows.
import { describe, expect, test } from "vitest";
import { Datapath } from "../../host/datapath.js";
import { serviceFlows } from "../../host/lb/service-flows.js";
import { LB_TEST_OPTIONS, V4, V6, backends, send, type Family } from "./fixtures.js";

describe.each([V4, V6])("serviceFlows, IPv$family", (f: Family) => {
  test("counts each flow once, on the backend that served it, with its answers; idle backends get a zero row", async () => {
    const dp = await Datapath.create(LB_TEST_OPTIONS);
    const { service } = dp.services.upsertService({ vip: f.vip, port: 80, proto: "tcp", backends: backends(f, [1, 2]) });
    dp.services.upsertService({ vip: f.vip, port: 53, proto: "udp", backends: backends(f, [3], 5353) });
    const served = new Map<string, number>();
    for (let i = 0; i < 6; i++) {
      const out = send(dp, f.build(f.client, f.vip).tcp({ sport: 40000 + i, dport: 80, flags: { syn: true } }), 10);
      const backend = [...dp.conntrack()].find((r) => r.tuple.sport === 40000 + i && r.tuple.dport === 8080)!.tuple.dst;
      served.set(backend, (served.get(backend) ?? 0) + 1);
      expect(out.verdict).toBe("pass");
      // The backend answers twice.
      for (let k = 0; k < 2; k++) send(dp, f.build(backend, f.client).tcp({ sport: 8080, dport: 40000 + i, flags: { syn: k === 0, ack: true } }), 10);
    }
    const rows = serviceFlows(dp.services.listServices(), dp.conntrack());
    const bracket = (a: string) => (f.family === 6 ? `[${a}]` : a);
    const tcp = rows.filter((r) => r.frontend === `${bracket(f.vip)}:80/tcp`);
    expect(tcp.map((r) => r.backendId)).toEqual(service.backends.map((b) => b.id));
    for (const r of tcp) {
      const addr = r.backend.replace(/:8080$/, "").replace(/^\[|\]$/g, "");
      const flows = served.get(addr) ?? 0;
      expect(r).toMatchObject({ flows, txPackets: flows, rxPackets: 2 * flows });
    }
    expect(tcp.reduce((n, r) => n + r.flows, 0)).toBe(6);
    expect(rows.find((r) => r.frontend === `${bracket(f.vip)}:53/udp`)).toMatchObject({ flows: 0, txPackets: 0, rxPackets: 0 });
    dp.close();
  });
});
