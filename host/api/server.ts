/**
 * The agent's API: HTTP/1.1 with JSON bodies on a unix socket, mode 0600 in
 * the state dir (root only), never a TCP listener. A unix socket's
 * permissions are the access control: whoever can open it may ask the agent
 * anything, so it is the state dir's owner alone.
 *
 * Routes are plain functions from a request to JSON; errors become a JSON
 * body { error, code } with 400 for bad input and 500 otherwise. Each call is
 * timed into api_process_time_seconds when metrics are on.
 */
import { chmodSync, lstatSync, unlinkSync } from "node:fs";
import { createServer, type IncomingMessage, type Server } from "node:http";
import { InvalidInputError, MembraneError } from "../errors.js";
import type { Metrics } from "../metrics/registry.js";

export interface ApiRequest {
  method: string;
  /** Path without the query. */
  path: string;
  query: URLSearchParams;
  /** Parsed JSON body (undefined when there is none). */
  body: unknown;
}

export type ApiHandler = (req: ApiRequest) => unknown | Promise<unknown>;

/**
 * A reply that goes on: a handler returning one streams newline-delimited
 * JSON (one value per `send`) until `run` resolves or the client goes away
 * (`closed` resolves then). Used by GET /v1/monitor.
 */
export class ApiStream {
  constructor(readonly run: (send: (value: unknown) => void, closed: Promise<void>) => Promise<void>) {}
}

/** "GET /v1/status" -> handler. */
export type ApiRoutes = Record<string, ApiHandler>;

export interface ApiServer {
  readonly socketPath: string;
  close(): Promise<void>;
}

const MAX_BODY = 16 * 1024 * 1024;

export async function startApiServer(socketPath: string, routes: ApiRoutes, metrics?: Metrics): Promise<ApiServer> {
  removeStaleSocket(socketPath);
  const server: Server = createServer((req, res) => {
    const started = process.hrtime.bigint();
    const url = new URL(req.url ?? "/", "http://agent");
    const key = `${req.method} ${url.pathname}`;
    const handler: ApiHandler | undefined = routes[key];
    const reply = (status: number, value: unknown): void => {
      const text = JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? Number(v) : v));
      res.writeHead(status, { "content-type": "application/json" }).end(text + "\n");
      metrics?.apiProcessTime.observe(
        { method: req.method ?? "?", path: handler !== undefined ? url.pathname : "unknown", return_code: String(status) },
        Number(process.hrtime.bigint() - started) / 1e9,
      );
    };
    const stream = async (s: ApiStream): Promise<void> => {
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      res.flushHeaders();
      const closed = new Promise<void>((resolve) => res.once("close", () => resolve()));
      const send = (value: unknown) => {
        if (!res.writableEnded && !res.destroyed) res.write(JSON.stringify(value) + "\n");
      };
      try {
        await s.run(send, closed);
      } catch (err) {
        send({ error: err instanceof Error ? err.message : String(err), code: err instanceof MembraneError ? err.code : "INTERNAL" });
      }
      res.end();
      metrics?.apiProcessTime.observe({ method: req.method ?? "?", path: url.pathname, return_code: "200" }, Number(process.hrtime.bigint() - started) / 1e9);
    };
    if (!handler) {
      reply(404, { error: `no such endpoint: ${key}`, code: "NOT_FOUND", endpoints: Object.keys(routes).sort() });
      return;
    }
    readBody(req)
      .then((body) => handler({ method: req.method ?? "GET", path: url.pathname, query: url.searchParams, body }))
      .then(
        (value) => (value instanceof ApiStream ? stream(value) : reply(200, value ?? {})),
        (err: unknown) => {
          const status = err instanceof InvalidInputError ? 400 : 500;
          reply(status, { error: err instanceof Error ? err.message : String(err), code: err instanceof MembraneError ? err.code : "INTERNAL" });
        },
      );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) =>
      reject(new MembraneError("API_LISTEN", `agent API: listen on ${socketPath}: ${err.code ?? err.message}`, { cause: err })),
    );
    // Created with the process umask first; narrowed to 0600 before anyone is told it exists.
    server.listen(socketPath, () => resolve());
  });
  chmodSync(socketPath, 0o600);
  return {
    socketPath,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new InvalidInputError(`request body over ${MAX_BODY} bytes`);
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return undefined;
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch (err) {
    throw new InvalidInputError(`request body is not JSON: ${(err as Error).message}`);
  }
}

/**
 * A socket file left by an agent that died cannot be listened on again.
 * Only a socket is removed: anything else at that path is an error, never
 * deleted. (The caller holds the state dir's lock, so no live agent owns it.)
 */
function removeStaleSocket(path: string): void {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new InvalidInputError(`agent API: ${path} exists and is not a socket`);
  unlinkSync(path);
}
