/** Where the agent's API socket lives: in its state dir, so the dir's owner alone may reach it. */
import { join } from "node:path";

export const AGENT_SOCKET_NAME = "agent.sock";

export function agentSocketPath(stateDir: string): string {
  return join(stateDir, AGENT_SOCKET_NAME);
}
