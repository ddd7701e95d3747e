/**
 * Asking the running agent: one HTTP request over its unix socket. A missing
 * socket or a refused connection means no agent is running there, which the
 * CLI reports as such rather than as a network error.
 */
import { request } from "node:http";
import { MembraneError } from "../errors.js";

export class AgentUnreachableError extends MembraneError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("AGENT_UNREACHABLE", message, options);
  }
}

export interface AgentReply<T> {
  status: number;
  body: T;
}

export function callAgent<T = unknown>(socketPath: string, method: string, path: string, body?: unknown, timeoutMs = 10_000): Promise<AgentReply<T>> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = request(
      { socketPath, method, path, headers: payload ? { "content-type": "application/json", "content-length": payload.length } : {}, timeout: timeoutMs },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          try {
            resolve({ status: res.statusCode ?? 0, body: (text ? JSON.parse(text) : undefined) as T });
          } catch (err) {
            reject(new MembraneError("AGENT_BAD_REPLY", `agent at ${socketPath}: ${method} ${path}: reply is not JSON`, { cause: err }));
          }
        });
      },
    );
    req.on("timeout", () => req.destroy(new AgentUnreachableError(`agent at ${socketPath} did not answer ${method} ${path} within ${timeoutMs} ms`)));
    req.on("error", (err: NodeJS.ErrnoException) => {
      if (err instanceof AgentUnreachableError) return reject(err);
      if (err.code === "ENOENT" || err.code === "ECONNREFUSED") {
        return reject(new AgentUnreachableError(`no agent is running (nothing answers on ${socketPath})`, { cause: err }));
      }
      reject(new AgentUnreachableError(`agent at ${socketPath}: ${err.code ?? err.message}`, { cause: err }));
    });
    req.end(payload);
  });
}
