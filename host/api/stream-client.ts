/**
 * A streaming call to the running agent: GET `path` on its unix socket and
 * hand each JSON line of the reply to `onValue` until the agent ends the
 * stream or `signal` aborts (then it resolves quietly). A non-200 reply is an
 * error carrying the agent's message.
 */
import { request } from "node:http";
import { MembraneError } from "../errors.js";
import { AgentUnreachableError } from "./client.js";

export function streamAgent(socketPath: string, path: string, onValue: (value: unknown) => void, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return resolve();
    const req = request({ socketPath, method: "GET", path }, (res) => {
      res.setEncoding("utf8");
      let buf = "";
      if (res.statusCode !== 200) {
        res.on("data", (c: string) => (buf += c));
        res.on("end", () => {
          let body: { error?: string; code?: string } = {};
          try {
            body = JSON.parse(buf);
          } catch {
            // not JSON: the status says enough
          }
          reject(new MembraneError(body.code ?? "AGENT_ERROR", `agent at ${socketPath}: GET ${path}: ${body.error ?? `HTTP ${res.statusCode}`}`));
        });
        return;
      }
      res.on("data", (chunk: string) => {
        buf += chunk;
        for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line.trim() === "") continue;
          try {
            onValue(JSON.parse(line));
          } catch (err) {
            req.destroy();
            return reject(err instanceof MembraneError ? err : new MembraneError("AGENT_BAD_REPLY", `agent at ${socketPath}: GET ${path}: a line is not JSON`, { cause: err }));
          }
        }
      });
      res.on("end", () => resolve());
      res.on("close", () => resolve());
    });
    signal?.addEventListener("abort", () => {
      req.destroy();
      resolve();
    }, { once: true });
    req.on("error", (err: NodeJS.ErrnoException) => {
      if (signal?.aborted) return resolve();
      if (err.code === "ENOENT" || err.code === "ECONNREFUSED") return reject(new AgentUnreachableError(`no agent is running (nothing answers on ${socketPath})`, { cause: err }));
      reject(new AgentUnreachableError(`agent at ${socketPath}: ${err.code ?? err.message}`, { cause: err }));
    });
    req.end();
  });
}
