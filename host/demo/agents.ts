/** Starting the traffic agent (agent.ts, compiled) inside a namespace. */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { packageRoot } from "../package-root.js";
import type { NetnsLab } from "../sys/netns/lab.js";
import type { NetnsProcess } from "../sys/netns/process.js";

/** Always the compiled agent, also when the caller runs from source (tests), like the forwarder worker. */
export function agentPath(): string {
  return join(packageRoot(), "dist/host/demo/agent.js");
}

/** Why the agent cannot be started, or undefined. */
export function agentMissing(): string | undefined {
  return existsSync(agentPath()) ? undefined : `${agentPath()} is missing: run npm run build`;
}

export interface TrafficAgentOptions {
  /** The agent gives up (exit 1) after this long; default 8000 ms. */
  limitMs?: number;
}

/** Starts the traffic agent in `ns` (see agent.ts for the modes); the lab kills it at teardown. */
export function startAgent(lab: NetnsLab, ns: string, args: Array<string | number>, opts: TrafficAgentOptions = {}): NetnsProcess {
  return lab.spawn(ns, [process.execPath, agentPath(), ...args.map(String)], {
    env: { AGENT_LIMIT_MS: String(opts.limitMs ?? 8000) },
    label: `${ns}: agent ${args.join(" ")}`,
  });
}
