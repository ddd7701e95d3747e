// A policy scenario both datapaths decide the same way: endpoint 1 (app=src,
// 10.91.0.1) may send UDP to 10.92.0.0/24 port 7000 only, so port 7001 is a
// policy drop and port 7000 a forwarded new flow.
import { PolicyEngine } from "../../host/policy/engine.js";
import { programPolicyTables } from "../../host/state/policy.js";
import type { DatapathEngine } from "../../host/engine.js";
import { packet4 } from "../../host/packet/build.js";
import { cnp, ep } from "../policy/helpers.js";

import { DST, SRC } from "./policy-lab.js";

export { DST, SRC };

export function policyEngine(): PolicyEngine {
  const engine = new PolicyEngine();
  engine.upsertEndpoint(ep(1, { app: "src" }, { ipv4: SRC }));
  engine.importPolicies([cnp("src", { endpointSelector: { matchLabels: { app: "src" } }, egress: [{ toCIDR: ["10.92.0.0/24"], toPorts: [{ ports: [{ port: "7000", protocol: "UDP" }] }] }] })]);
  return engine;
}

export function programScenario(dp: Pick<DatapathEngine, "policyTables">): PolicyEngine {
  const engine = policyEngine();
  programPolicyTables(engine, [dp.policyTables()]);
  return engine;
}

export const udp = (dport: number, sport = 40000) => packet4({ src: SRC, dst: DST }).udp({ sport, dport, payload: new Uint8Array(11) });

/** The endpoint lookup the agent does: endpoint 1 at SRC. */
export const endpointOf = (address: string) => (address === SRC ? 1 : undefined);
