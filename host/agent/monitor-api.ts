/**
 * The state-file agent's API socket (<state-dir>/agent.sock, 0600): it serves
 * GET /v1/monitor and GET /v1/capture, so `membrane monitor` and `membrane capture` reach a running agent in either
 * mode the same way (the cluster agent adds the route to its own API).
 */
import { startApiServer, type ApiServer } from "../api/server.js";
import { agentSocketPath } from "../api/socket-path.js";
import type { Metrics } from "../metrics/registry.js";
import { monitorApiRoutes } from "../monitor/api-route.js";
import { captureApiRoutes } from "../capture/api-route.js";
import type { AgentMonitor } from "./agent-monitor.js";

export function startMonitorApi(stateDir: string, monitor: AgentMonitor, metrics?: Metrics): Promise<ApiServer> {
  return startApiServer(agentSocketPath(stateDir), { ...monitorApiRoutes(monitor.hub), ...captureApiRoutes(monitor) }, metrics);
}
