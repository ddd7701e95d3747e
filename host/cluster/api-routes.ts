/**
 * The agent API's cluster routes (served by host/api/server.ts on the
 * state dir's 0600 unix socket): status, and the lists the CLI asks for.
 * Plain JSON from the core's tables; nothing here changes anything.
 */
import { InvalidInputError } from "../errors.js";
import type { ApiRoutes } from "../api/server.js";
import type { ClusterAgentCore } from "./agent-core.js";

export function clusterApiRoutes(core: ClusterAgentCore): ApiRoutes {
  return {
    "GET /v1/status": () => core.status(),
    "GET /v1/endpoints": () =>
      core.localEndpoints().map((e) => ({ ...e, entries: core.engine.policyEntries(e.id).length })),
    "GET /v1/identities": () =>
      core.identities.list().map((i) => ({
        id: i.id,
        kind: i.kind,
        scope: i.kind === "endpoint" ? "cluster" : "local",
        localReferences: core.identities.references(i.id),
        labels: i.labels.toStrings(),
      })),
    "GET /v1/services": () => core.serviceSpecs(),
    "GET /v1/policy": (req) => {
      const text = req.query.get("endpoint");
      const eps = core.localEndpoints();
      if (text === null) return eps.map((e) => ({ endpoint: e.id, pod: e.pod, entries: core.engine.policyEntries(e.id) }));
      const id = Number(text);
      const ep = eps.find((e) => e.id === id);
      if (!Number.isInteger(id) || !ep) throw new InvalidInputError(`endpoint=${text}: no such local endpoint (have: ${eps.map((e) => e.id).join(", ") || "none"})`);
      return [{ endpoint: ep.id, pod: ep.pod, entries: core.engine.policyEntries(ep.id) }];
    },
    "GET /v1/nodes": () => [...core.nodes.records.values()].sort((a, b) => (a.name < b.name ? -1 : 1)).map((n) => ({ ...n, self: n.name === core.node })),
    "GET /v1/ipcache": () => core.ipcacheTable(),
    "GET /v1/routes": () => core.routeTable(),
  };
}
