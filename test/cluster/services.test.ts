import { describe, expect, it } from "vitest";
import { ServiceTable, serviceSpecsOf } from "../../host/cluster/services.js";
import type { ServiceRecord } from "../../host/kvstore/records/service.js";

const dualStack: ServiceRecord = {
  cluster: "default", namespace: "demo", name: "backend",
  frontends: [
    { ip: "10.96.0.10", port: 80, protocol: "TCP", name: "http" },
    { ip: "fd00:96::10", port: 80, protocol: "TCP", name: "http" },
  ],
  backends: [
    { ip: "10.210.2.3", port: 8080, protocol: "TCP", name: "http" },
    { ip: "fd00:210:2::3", port: 8080, protocol: "TCP", name: "http" },
    { ip: "10.210.1.3", port: 8080, protocol: "TCP", name: "http" },
  ],
};

describe("serviceSpecsOf", () => {
  it("gives each frontend only the backends of its address family", () => {
    const [v4, v6] = serviceSpecsOf(dualStack);
    expect(v4).toEqual({ vip: "10.96.0.10", port: 80, proto: "tcp", backends: [{ addr: "10.210.1.3", port: 8080 }, { addr: "10.210.2.3", port: 8080 }] });
    expect(v6).toEqual({ vip: "fd00:96::10", port: 80, proto: "tcp", backends: [{ addr: "fd00:210:2::3", port: 8080 }] });
  });

  it("a frontend whose family has no backend gets none (not the other family's)", () => {
    const only4: ServiceRecord = { ...dualStack, backends: dualStack.backends.filter((b) => !b.ip.includes(":")) };
    const t = new ServiceTable();
    const d = t.update("svc", only4);
    expect(d.upsert.find((s) => s.vip === "fd00:96::10")?.backends).toEqual([]);
  });
});
