/**
 * The metrics endpoint: GET /metrics in Prometheus' text format. Off unless
 * asked for; it listens where the user says, and an address without a host
 * part means loopback, never every interface.
 */
import { createServer, type Server } from "node:http";
import { isIP } from "node:net";
import type { Registry } from "prom-client";
import { InvalidInputError } from "../errors.js";

export const DEFAULT_METRICS_ADDRESS = "127.0.0.1:9962";

export interface ListenAddress {
  host: string;
  port: number;
}

/**
 * Parses `--metrics` values: "127.0.0.1:9962", "[::1]:9962", ":9962" or
 * "9962" (both loopback). A hostname is refused: the user names an address.
 */
export function parseListenAddress(text: string, what = "--metrics"): ListenAddress {
  const value = text.trim();
  let host = "127.0.0.1";
  let portText = value;
  const bracketed = /^\[([^\]]+)\]:(\d+)$/.exec(value);
  if (bracketed) {
    host = bracketed[1]!;
    portText = bracketed[2]!;
  } else if (value.includes(":")) {
    const at = value.lastIndexOf(":");
    if (value.indexOf(":") !== at) throw new InvalidInputError(`${what}: IPv6 addresses go in brackets ("[::1]:9962"), got ${JSON.stringify(text)}`);
    host = value.slice(0, at) || "127.0.0.1";
    portText = value.slice(at + 1);
  }
  if (!/^\d+$/.test(portText)) throw new InvalidInputError(`${what}: expected ADDRESS:PORT with a port 1..65535, got ${JSON.stringify(text)}`);
  const port = Number(portText);
  if (port < 1 || port > 65535) throw new InvalidInputError(`${what}: port must be 1..65535, got ${port}`);
  if (isIP(host) === 0) throw new InvalidInputError(`${what}: ${JSON.stringify(host)} is not an IP address`);
  return { host, port };
}

export interface MetricsServer {
  readonly address: ListenAddress;
  close(): Promise<void>;
}

/** Serves `registry` on `address`. Resolves once listening; rejects with a clear error if it cannot. */
export async function startMetricsServer(registry: Registry, address: ListenAddress): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    if (req.method !== "GET" || (req.url !== "/metrics" && !req.url?.startsWith("/metrics?"))) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found: GET /metrics\n");
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { "content-type": registry.contentType }).end(text),
      (err: Error) => res.writeHead(500, { "content-type": "text/plain" }).end(`collect metrics: ${err.message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) =>
      reject(new InvalidInputError(`metrics: listen on ${format(address)}: ${err.code ?? err.message}`, { cause: err })),
    );
    server.listen(address.port, address.host, () => resolve());
  });
  const bound = server.address();
  const actual = typeof bound === "object" && bound ? { host: bound.address, port: bound.port } : address;
  return {
    address: actual,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function format(a: ListenAddress): string {
  return a.host.includes(":") ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}
