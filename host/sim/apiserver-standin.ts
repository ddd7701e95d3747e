/**
 * A stand-in for the Kubernetes apiserver on the agents' bootstrap path:
 * HTTP on loopback that answers 200 while requests stay within its rate and
 * 429 Too Many Requests above it (the apiserver's max-in-flight / priority
 * and fairness refusal). It counts requests and refusals per 100 ms, so a
 * mass restart's request peak, its 429s and how retries spread are visible.
 */
import { createServer, type Server } from "node:http";
import { limited, TokenBucket } from "../kvstore/rate-limit.js";

export const STANDIN_BUCKET_MS = 100;

export interface StandinCounts {
  requests: number;
  ok: number;
  tooMany: number;
}

export class ApiserverStandin {
  readonly counts: StandinCounts = { requests: 0, ok: 0, tooMany: 0 };
  /** Requests per 100 ms bucket since the last resetTimeline(). */
  private buckets: number[] = [];
  private origin = performance.now();
  private bucket: TokenBucket;

  private constructor(private readonly server: Server, readonly port: number, readonly qps: number, readonly burst: number) {
    this.bucket = new TokenBucket(limited(qps, burst, "apiserver stand-in"));
  }

  static async start(options: { qps: number; burst?: number }): Promise<ApiserverStandin> {
    let standin: ApiserverStandin | undefined;
    const server = createServer((req, res) => {
      standin!.answer(res, req.url ?? "/");
    });
    server.keepAliveTimeout = 30_000;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    const addr = server.address();
    const port = typeof addr === "object" && addr !== null ? addr.port : 0;
    standin = new ApiserverStandin(server, port, options.qps, options.burst ?? Math.max(1, Math.round(options.qps / 10)));
    return standin;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  private answer(res: import("node:http").ServerResponse, url: string): void {
    this.counts.requests++;
    const b = Math.floor((performance.now() - this.origin) / STANDIN_BUCKET_MS);
    while (this.buckets.length <= b) this.buckets.push(0);
    this.buckets[b]!++;
    if (this.bucket.reserve() > 0) {
      this.bucket.cancel();
      this.counts.tooMany++;
      res.writeHead(429, { "content-type": "application/json", "retry-after": "1" });
      res.end('{"kind":"Status","code":429,"reason":"TooManyRequests"}');
      return;
    }
    this.counts.ok++;
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ kind: "Status", code: 200, path: url }));
  }

  /** Starts a new measurement window (counts and timeline from zero). */
  resetTimeline(): void {
    this.buckets = [];
    this.origin = performance.now();
    this.counts.requests = this.counts.ok = this.counts.tooMany = 0;
  }

  /** Requests/s in each 100 ms bucket of the window. */
  timeline(): number[] {
    return this.buckets.map((n) => (n * 1000) / STANDIN_BUCKET_MS);
  }

  peakPerSecond(): number {
    return Math.max(0, ...this.timeline());
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** What the apiserver said to one GET: 200 (true) or 429 (an error to retry). */
export class TooManyRequestsError extends Error {
  constructor(readonly path: string) {
    super(`apiserver ${path}: 429 Too Many Requests`);
  }
}

export async function apiserverGet(base: string, path: string): Promise<void> {
  const res = await fetch(`${base}${path}`);
  await res.arrayBuffer();
  if (res.status === 429) throw new TooManyRequestsError(path);
  if (res.status !== 200) throw new Error(`apiserver ${path}: HTTP ${res.status}`);
}
