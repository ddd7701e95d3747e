/**
 * A real etcd for tests: Debian's /usr/bin/etcd on 127.0.0.1, free ports, a
 * temporary data dir, stopped by its PID. Fault tests kill it with SIGKILL
 * and restart it on the same data dir and ports.
 *
 * `etcdMissing()` feeds describeIf: outside CI a machine without etcd skips
 * with the reason, under CI=true the suite fails (a missing install step must
 * not pass as green).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

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

export class TestEtcd {
  private child: ChildProcess | undefined;
  private stderr = "";

  private constructor(
    readonly dataDir: string,
    readonly clientPort: number,
    readonly peerPort: number,
  ) {}

  /** Starts a fresh etcd and waits until /health says true. */
  static async start(): Promise<TestEtcd> {
    const dataDir = mkdtempSync(join(tmpdir(), "membrane-etcd-"));
    const etcd = new TestEtcd(dataDir, await freePort(), await freePort());
    await etcd.launch();
    return etcd;
  }

  get endpoint(): string {
    return `127.0.0.1:${this.clientPort}`;
  }

  get spec(): string {
    return `etcd:${this.endpoint}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  private async launch(): Promise<void> {
    const client = `http://127.0.0.1:${this.clientPort}`;
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
      try {
        const res = await fetch(`${client}/health`, { signal: AbortSignal.timeout(1000) });
        const body = (await res.json()) as { health?: string };
        if (body.health === "true") return;
      } catch {
        /* not listening yet */
      }
      if (Date.now() > deadline) {
        this.killNow("SIGKILL");
        throw new Error(`etcd did not become healthy within 30 s: ${this.stderr}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
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
