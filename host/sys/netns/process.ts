/**
 * A child process inside a network namespace (`ip netns exec <ns> ...`)
 * that prints JSON lines on stdout: the lines as they arrive, bounded waits
 * for a {"ready":true} line, for any line matching a predicate, and for a
 * successful exit.
 */
import { spawn, type ChildProcess } from "node:child_process";

export interface SpawnInNetnsOptions {
  env?: Record<string, string>;
  /** For error messages; default "<ns>: <argv>". */
  label?: string;
}

export class NetnsProcess {
  readonly lines: unknown[] = [];
  readonly exited: Promise<number | null>;
  #stderr = "";
  #waiters: Array<() => void> = [];

  constructor(readonly child: ChildProcess, readonly label: string) {
    let buf = "";
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (chunk: string) => {
      buf += chunk;
      for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          this.lines.push(JSON.parse(line));
        } catch {
          this.lines.push(line);
        }
      }
      this.#wake();
    });
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (chunk: string) => (this.#stderr += chunk));
    this.exited = new Promise((resolve) => {
      child.on("error", (err) => {
        this.#stderr += String(err);
        resolve(null);
      });
      child.on("close", (code) => resolve(code));
    });
    void this.exited.then(() => this.#wake());
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  get stderr(): string {
    return this.#stderr;
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  #describe(what: string): Error {
    return new Error(`${this.label}: ${what}${this.#stderr ? `; stderr: ${this.#stderr.trim()}` : ""}`);
  }

  /** Waits (at most `ms`) until a line satisfies `match`; returns it. Fails early when the process exits first. */
  async waitLine<T = unknown>(what: string, match: (line: unknown) => boolean, ms = 5_000): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const hit = this.lines.find(match);
      if (hit !== undefined) return hit as T;
      if (!this.running) throw this.#describe(`exited before ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw this.#describe(`${what}: not seen within ${ms} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Waits (at most `ms`) for the {"ready":true} line servers print once listening. */
  async ready(ms = 5_000): Promise<void> {
    await this.waitLine("ready", (l) => (l as { ready?: boolean } | null)?.ready === true, ms);
  }

  /** Waits (at most `ms`, then kills it) for a successful exit and returns its last JSON object line. */
  async result<T>(ms = 10_000): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), ms)));
    const outcome = await Promise.race([this.exited, timeout]);
    clearTimeout(timer);
    if (outcome === "timeout") {
      this.kill();
      throw this.#describe(`did not finish within ${ms} ms (killed)`);
    }
    if (outcome !== 0) throw this.#describe(`exited with ${outcome ?? this.child.signalCode}`);
    const result = this.lines.filter((l) => typeof l === "object" && l !== null && !("ready" in l)).at(-1);
    if (result === undefined) throw this.#describe("printed no result");
    return result as T;
  }

  /** SIGKILL, when still running. */
  kill(): void {
    if (this.running && this.child.pid !== undefined) {
      try {
        process.kill(this.child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  }
}

/**
 * Starts `argv` in namespace `ns` through `ip netns exec`, which execs the
 * command (the child pid is the command's), stdin closed, stdout/stderr piped.
 */
export function spawnInNetns(ns: string, argv: string[], opts: SpawnInNetnsOptions = {}): NetnsProcess {
  const child = spawn("ip", ["netns", "exec", ns, ...argv], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...opts.env },
  });
  return new NetnsProcess(child, opts.label ?? `${ns}: ${argv.join(" ")}`);
}
