/**
 * GET /v1/monitor on the agent's API socket: a stream of monitor events as
 * JSON lines, until the client hangs up. Query: type (repeatable: drop,
 * trace, policy-verdict), endpoint, reason, address, port, sample, rate.
 * A bad query is refused (400) before anything is turned on.
 */
import { ApiStream, type ApiRequest, type ApiRoutes } from "../api/server.js";
import { InvalidInputError } from "../errors.js";
import { buildMonitorFilter } from "./filter.js";
import type { MonitorHub } from "./hub.js";
import { checkMonitorSettings } from "./settings.js";

function intParam(q: URLSearchParams, name: string): number | undefined {
  const v = q.get(name);
  if (v === null) return undefined;
  if (!/^\d+$/.test(v)) throw new InvalidInputError(`monitor: ${name} must be a whole number, got ${JSON.stringify(v)}`);
  return Number(v);
}

export function monitorRequest(q: URLSearchParams) {
  const types = q.getAll("type");
  const settings = checkMonitorSettings({ types: types.length ? types : undefined, sample: intParam(q, "sample"), ratePerSecond: intParam(q, "rate") });
  const filter = buildMonitorFilter({
    types: settings.types, endpoint: intParam(q, "endpoint"), reason: q.get("reason") ?? undefined, address: q.get("address") ?? undefined, port: intParam(q, "port"),
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
