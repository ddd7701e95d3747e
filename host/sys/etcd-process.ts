/**
 * A private etcd on loopback: Debian's /usr/bin/etcd on 127.0.0.1, free
 * ports, a temporary data dir, stopped by its PID (never by name). The
 * simulator (`membrane sim`) starts one by default; tests start theirs
 * through test/support/etcd.ts. Fault tests kill it with SIGKILL and restart
 * it on the same data dir and ports.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { accessSync, constants, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { get as httpGet, type IncomingMessage } from "node:http";
import { get as httpsGet } from "node:https";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const DEFAULT_ETCD_BINARY = "/usr/bin/etcd";

/** Why `binary` cannot run (undefined: it can). */
export function etcdMissing(binary = DEFAULT_ETCD_BINARY): string | undefined {
  try {
    accessSync(binary, constants.X_OK);
    return undefined;
  } catch {
    return `etcd is not installed at ${binary} (Debian package etcd-server)`;
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
export interface EtcdProcessTls {
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile: string;
  /** Require client certificates signed by caFile. */
  readonly clientCertAuth?: boolean;
}

export class EtcdProcess {
  private child: ChildProcess | undefined;
  private stderr = "";

  private constructor(
    readonly dataDir: string,
    readonly clientPort: number,
    readonly peerPort: number,
    readonly tls: EtcdProcessTls | undefined,
    readonly binary: string,
  ) {}

  /** Starts a fresh etcd and waits until /health says true. */
  static async start(options: { tls?: EtcdProcessTls; binary?: string } = {}): Promise<EtcdProcess> {
    const dataDir = mkdtempSync(join(tmpdir(), "membrane-etcd-"));
    const etcd = new EtcdProcess(dataDir, await freePort(), await freePort(), options.tls, options.binary ?? DEFAULT_ETCD_BINARY);
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
    const r = spawnSync(this.binary.replace(/etcd$/, "etcdctl"), [`--endpoints=${this.endpoint}`, ...args], {
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
      this.binary,
      [
        "--name", "membrane",
        "--data-dir", this.dataDir,
        "--listen-client-urls", client,
        "--advertise-client-urls", client,
        "--listen-peer-urls", peer,
        "--initial-advertise-peer-urls", peer,
        "--initial-cluster", `membrane=${peer}`,
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
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`etcd exited while starting (code ${child.exitCode}, signal ${child.signalCode}): ${this.stderr}`);
      }
      if (await this.healthy()) return;
      if (Date.now() > deadline) {
        this.killNow("SIGKILL");
        throw new Error(`etcd did not become healthy within 30 s: ${this.stderr}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
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
