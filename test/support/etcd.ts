/**
 * A real etcd for tests: Debian's /usr/bin/etcd on 127.0.0.1, free ports, a
 * temporary data dir, stopped by its PID. Fault tests kill it with SIGKILL
 * and restart it on the same data dir and ports.
 *
 * `etcdMissing()` feeds describeIf: outside CI a machine without etcd skips
 * with the reason, under CI=true the suite fails (a missing install step must
 * not pass as green).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { accessSync, constants, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { get as httpGet, type IncomingMessage } from "node:http";
import { get as httpsGet } from "node:https";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { waitFor } from "./wait-for.js";

export const ETCD_BINARY = process.env.MEMBRANE_TEST_ETCD ?? "/usr/bin/etcd";

export function etcdMissing(): string | undefined {
  try {
    accessSync(ETCD_BINARY, constants.X_OK);
    return undefined;
  } catch {
    return `etcd is not installed at ${ETCD_BINARY} (Debian package etcd-server)`;
  }
}

/** A port nobody listens on right now (the kernel picks it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Serve clients over TLS with these PEM files (the health check trusts `caFile`). */
export interface TestEtcdTls {
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile: string;
  /** Require client certificates signed by caFile. */
  readonly clientCertAuth?: boolean;
}

export class TestEtcd {
  private child: ChildProcess | undefined;
  private stderr = "";

  private constructor(
    readonly dataDir: string,
    readonly clientPort: number,
    readonly peerPort: number,
    readonly tls: TestEtcdTls | undefined,
  ) {}

  /** Starts a fresh etcd and waits until /health says true. */
  static async start(options: { tls?: TestEtcdTls } = {}): Promise<TestEtcd> {
    const dataDir = mkdtempSync(join(tmpdir(), "membrane-etcd-"));
    const etcd = new TestEtcd(dataDir, await freePort(), await freePort(), options.tls);
    await etcd.launch();
    return etcd;
  }

  get endpoint(): string {
    return `${this.tls ? "https" : "http"}://127.0.0.1:${this.clientPort}`;
  }

  get spec(): string {
    return `etcd:${this.endpoint}`;
  }

  /** Runs etcdctl against this etcd (for setup steps such as enabling auth). */
  etcdctl(args: string[]): string {
    const r = spawnSync(ETCD_BINARY.replace(/etcd$/, "etcdctl"), [`--endpoints=${this.endpoint}`, ...args], {
      env: { ...process.env, ETCDCTL_API: "3" },
      encoding: "utf8",
    });
    if (r.status !== 0) throw new Error(`etcdctl ${args.join(" ")}: ${r.stderr || r.error?.message}`);
    return r.stdout;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  private async launch(): Promise<void> {
    const client = this.endpoint;
    const peer = `http://127.0.0.1:${this.peerPort}`;
    this.stderr = "";
    const child = spawn(
      ETCD_BINARY,
      [
        "--name", "membrane-test",
        "--data-dir", this.dataDir,
        "--listen-client-urls", client,
        "--advertise-client-urls", client,
        "--listen-peer-urls", peer,
        "--initial-advertise-peer-urls", peer,
        "--initial-cluster", `membrane-test=${peer}`,
        "--logger", "zap",
        "--log-level", "error",
        ...(this.tls
          ? ["--cert-file", this.tls.certFile, "--key-file", this.tls.keyFile, "--trusted-ca-file", this.tls.caFile, ...(this.tls.clientCertAuth ? ["--client-cert-auth"] : [])]
          : []),
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    child.stderr?.on("data", (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-4000);
    });
    this.child = child;
    const exited = () => child.exitCode !== null || child.signalCode !== null;
    await waitFor("etcd to become healthy", async () => exited() || (await this.healthy()), {
      intervalMs: 100,
      detail: () => this.stderr,
    }).catch((err: Error) => {
      this.killNow("SIGKILL");
      throw err;
    });
    if (exited()) throw new Error(`etcd exited while starting (code ${child.exitCode}, signal ${child.signalCode}): ${this.stderr}`);
  }

  /** etcd's /health over loopback; with TLS, trusting the test CA (and presenting the server pair as client cert). */
  private healthy(): Promise<boolean> {
    const url = `${this.endpoint}/health`;
    const tls = this.tls;
    return new Promise((resolve) => {
      const done = (res: IncomingMessage): void => {
        let body = "";
        res.on("data", (d: Buffer) => (body += d.toString()));
        res.on("end", () => resolve(/"health":\s*"true"/.test(body)));
        res.on("error", () => resolve(false));
      };
      const req = tls
        ? httpsGet(url, { ca: readFileSync(tls.caFile), cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile), timeout: 1000 }, done)
        : httpGet(url, { timeout: 1000 }, done);
      req.on("error", () => resolve(false));
      req.on("timeout", () => req.destroy());
    });
  }

  private killNow(signal: NodeJS.Signals): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    process.kill(child.pid, signal);
    return exited;
  }

  /** SIGKILL (no clean shutdown) and wait for the process to be gone. */
  async kill9(): Promise<void> {
    await this.killNow("SIGKILL");
  }

  /** Starts etcd again on the same data dir and ports (after kill9 or stop). */
  async restart(): Promise<void> {
    await this.launch();
  }

  /** Stops etcd (SIGTERM) and removes its data dir. */
  async stop(): Promise<void> {
    await this.killNow("SIGTERM");
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}
