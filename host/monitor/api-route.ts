/**
 * GET /v1/monitor on the agent's API socket: a stream of monitor events as
 * JSON lines, until the client hangs up. Query: type (repeatable: drop,
 * trace, policy-verdict), endpoint, reason, address, port, sample, rate.
 * A bad query is refused (400) before anything is turned on.
 */
import { ApiStream, type ApiRequest, type ApiRoutes } from "../api/server.js";
import { intQuery } from "../api/query.js";
import { buildMonitorFilter } from "./filter.js";
import type { MonitorHub } from "./hub.js";
import { checkMonitorSettings } from "./settings.js";


export function monitorRequest(q: URLSearchParams) {
  const types = q.getAll("type");
  const settings = checkMonitorSettings({ types: types.length ? types : undefined, sample: intQuery(q, "sample", "monitor"), ratePerSecond: intQuery(q, "rate", "monitor") });
  const filter = buildMonitorFilter({
    types: settings.types, endpoint: intQuery(q, "endpoint", "monitor"), reason: q.get("reason") ?? undefined, address: q.get("address") ?? undefined, port: intQuery(q, "port", "monitor"),
  });
  return { settings, filter };
}

export function monitorApiRoutes(hub: MonitorHub): ApiRoutes {
  return {
    "GET /v1/monitor": (req: ApiRequest) => {
      const { settings, filter } = monitorRequest(req.query);
      return new ApiStream(async (send, closed) => {
        const unsubscribe = await hub.subscribe(settings, filter, send);
        send({ monitoring: settings });
        await closed;
        await unsubscribe();
      });
    },
  };
}
