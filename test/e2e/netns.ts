/**
 * Helpers for the end-to-end tests: network namespaces and veths made with
 * iproute2, entering a namespace for the duration of a synchronous call, and
 * traffic agents (test/e2e/agent.mjs) run as child processes inside a
 * namespace. Everything made here is recorded so teardown can remove it even
 * when a test failed halfway, and every wait is bounded.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { CLONE_NEWNET, libc, O_CLOEXEC, O_RDONLY } from "../../host/bpf/libc.js";
import { bpfObjectPath } from "../../host/tools/build-bpf.js";
import { kernelUnavailable } from "../differential/kernel-available.js";

export const AGENT = join(dirname(fileURLToPath(import.meta.url)), "agent.mjs");
export const PROJECT_ROOT = join(dirname(fileURLToPath(import.meta.url)), "../..");

/** Why the namespace tests cannot run here, or undefined. */
export function e2eUnavailable(): string | undefined {
  const kernel = kernelUnavailable();
  if (kernel) return kernel;
  if (!existsSync(bpfObjectPath("bpf_lxc"))) return `${bpfObjectPath("bpf_lxc")} is missing: install clang and libbpf-dev, run npm run build`;
  for (const cmd of ["ip", "tc"]) {
    try {
      execFileSync(cmd, ["-V"], { stdio: "pipe", timeout: 5_000 });
    } catch {
      return `the namespace tests need iproute2 (${cmd})`;
    }
  }
  return undefined;
}

/** KERNEL_SKIP's rule: skip with the reason outside CI, fail in CI (an install step is missing). */
export const E2E_SKIP = (() => {
  const reason = e2eUnavailable();
  if (reason && process.env.CI === "true") throw new Error(`namespace tests cannot run in CI: ${reason}`);
  if (reason) console.warn(`skipping namespace tests: ${reason}`);
  return reason !== undefined;
})();

/** Runs an iproute2 command (bounded), returning stdout; the error carries its stderr. */
function iproute2(cmd: "ip" | "tc", args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 10_000 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(" ")}: ${(e.stderr ?? "").trim() || e.message}`, { cause: err });
  }
}

export const ip = (...args: string[]): string => iproute2("ip", args);
export const tc = (...args: string[]): string => iproute2("tc", args);

export function netnsList(): string[] {
  return ip("netns", "list").split("\n").map((l) => l.split(" ")[0]!).filter(Boolean);
}

/**
 * Runs `fn` with this thread in network namespace `name` (/run/netns/<name>),
 * then returns to the namespace it was in. setns moves only the calling
 * thread, and `fn` is synchronous, so nothing else runs in between; what the
 * kernel objects `fn` creates (tc filters, netlink requests, if_nametoindex)
 * belong to that namespace.
 */
export function withNetns<T>(name: string, fn: () => T): T {
  const c = libc();
  const self = c.open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0) throw new Error(`open /proc/thread-self/ns/net: errno ${c.errno()}`);
  try {
    const target = c.open(`/run/netns/${name}`, O_RDONLY | O_CLOEXEC);
    if (target < 0) throw new Error(`open /run/netns/${name}: errno ${c.errno()}`);
    try {
      if (c.setns(target, CLONE_NEWNET) !== 0) throw new Error(`enter network namespace ${name}: errno ${c.errno()}`);
    } finally {
      c.close(target);
    }
    try {
      return fn();
    } finally {
      if (c.setns(self, CLONE_NEWNET) !== 0) {
        // Carrying on would send every later netlink call to the wrong namespace: fail loudly instead.
        throw new Error(`cannot return to the original network namespace (errno ${c.errno()})`);
      }
    }
  } finally {
    c.close(self);
  }
}

/** A child process (a traffic agent) inside a namespace; its JSON lines on stdout. */
export class Agent {
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
      for (const w of this.#waiters.splice(0)) w();
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
    void this.exited.then(() => {
      for (const w of this.#waiters.splice(0)) w();
    });
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  #describe(what: string): Error {
    return new Error(`${this.label}: ${what}${this.#stderr ? `; stderr: ${this.#stderr.trim()}` : ""}`);
  }

  /** Waits (at most `ms`) for the server's {"ready":true}. */
  async ready(ms = 5_000): Promise<void> {
    const deadline = Date.now() + ms;
    for (;;) {
      if (this.lines.some((l) => (l as { ready?: boolean }).ready === true)) return;
      if (!this.running) throw this.#describe("exited before it was ready");
      const left = deadline - Date.now();
      if (left <= 0) throw this.#describe(`not ready within ${ms} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Waits (at most `ms`, then kills it) for a successful exit and returns its result line. */
  async result<T>(ms = 10_000): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), ms)));
    const outcome = await Promise.race([this.exited, timeout]);
    clearTimeout(timer);
    if (outcome === "timeout") {
      this.kill();
      throw this.#describe(`did not finish within ${ms} ms (killed)`);
    }
    if (outcome !== 0) throw this.#describe(`exited with ${outcome}`);
    const result = this.lines.filter((l) => typeof l === "object" && l !== null && !("ready" in l)).at(-1);
    if (result === undefined) throw this.#describe("printed no result");
    return result as T;
  }

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
 * Two namespaces joined by one veth. The endpoint's end of the veth (the
 * "host side", where Cilium attaches bpf_lxc) is in `peer`; the pod's end,
 * eth0, is in `pod`. See kernel-endpoint.test.ts for why.
 */
export class Topology {
  readonly pod: string;
  readonly peer: string;
  /** The host-side veth, in the peer namespace (unique per run, so a leak would be recognisable). */
  readonly lxc: string;
  readonly podIf = "eth0";
  readonly agents = new Set<Agent>();
  #created: string[] = [];

  constructor(readonly tag: string, readonly addrs: { pod4: string; peer4: string; pod6: string; peer6: string }) {
    this.pod = `mbr-pod-${tag}`;
    this.peer = `mbr-peer-${tag}`;
    this.lxc = `lxc${tag}`.slice(0, 15);
  }

  create(): void {
    for (const ns of [this.pod, this.peer]) {
      ip("netns", "add", ns);
      this.#created.push(ns);
    }
    // Made in place: neither end ever exists in the test's own namespace.
    ip("-n", this.peer, "link", "add", this.lxc, "type", "veth", "peer", "name", this.podIf, "netns", this.pod);
    const { pod4, peer4, pod6, peer6 } = this.addrs;
    ip("-n", this.pod, "addr", "add", `${pod4}/24`, "dev", this.podIf);
    ip("-n", this.pod, "addr", "add", `${pod6}/64`, "dev", this.podIf, "nodad");
    ip("-n", this.peer, "addr", "add", `${peer4}/24`, "dev", this.lxc);
    ip("-n", this.peer, "addr", "add", `${peer6}/64`, "dev", this.lxc, "nodad");
    for (const [ns, dev] of [[this.pod, "lo"], [this.peer, "lo"], [this.pod, this.podIf], [this.peer, this.lxc]] as const) {
      ip("-n", ns, "link", "set", dev, "up");
    }
  }

  /** Waits (bounded) until both ends report carrier. */
  async waitUp(ms = 5_000): Promise<void> {
    const deadline = Date.now() + ms;
    const up = (ns: string, dev: string) => /\bLOWER_UP\b/.test(ip("-n", ns, "link", "show", dev)) && /state UP/.test(ip("-n", ns, "link", "show", dev));
    while (!(up(this.pod, this.podIf) && up(this.peer, this.lxc))) {
      if (Date.now() > deadline) throw new Error(`veth ${this.lxc}/${this.podIf} not up within ${ms} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Starts test/e2e/agent.mjs in namespace `ns`. */
  agent(ns: string, args: Array<string | number>): Agent {
    const argv = ["netns", "exec", ns, process.execPath, AGENT, ...args.map(String)];
    const child = spawn("ip", argv, {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, MEMBRANE_ROOT: PROJECT_ROOT, AGENT_LIMIT_MS: "8000" },
    });
    const agent = new Agent(child, `${ns}: agent ${args.join(" ")}`);
    this.agents.add(agent);
    void agent.exited.then(() => this.agents.delete(agent));
    return agent;
  }

  /** Kills the agents still running (bounded wait for their exit), then deletes the namespaces (and with them the veth). */
  async destroy(): Promise<string[]> {
    const problems: string[] = [];
    const agents = [...this.agents];
    for (const a of agents) a.kill();
    await Promise.race([Promise.all(agents.map((a) => a.exited)), new Promise((r) => setTimeout(r, 3_000))]);
    for (const a of agents) if (a.running) problems.push(`${a.label} (pid ${a.child.pid}) still running after SIGKILL`);
    // A process left in a namespace would keep it alive after `ip netns del`.
    for (const ns of this.#created) {
      try {
        const pids = ip("netns", "pids", ns).split("\n").filter(Boolean);
        if (pids.length) problems.push(`processes still in ${ns}: ${pids.join(" ")}`);
      } catch (err) {
        problems.push((err as Error).message);
      }
    }
    for (const ns of this.#created.splice(0).reverse()) {
      try {
        ip("netns", "del", ns);
      } catch (err) {
        if (netnsList().includes(ns)) problems.push((err as Error).message);
      }
    }
    return problems;
  }

  /** What of this run is still visible from the test's namespace. */
  leftovers(pinDir: string): string[] {
    const left: string[] = [];
    for (const ns of netnsList()) if (ns === this.pod || ns === this.peer) left.push(`network namespace ${ns}`);
    const links = ip("-o", "link", "show");
    if (links.includes(`${this.lxc}:`) || links.includes(`${this.lxc}@`)) left.push(`link ${this.lxc}`);
    if (existsSync(pinDir)) left.push(`bpffs directory ${pinDir}`);
    for (const a of this.agents) if (a.running) left.push(`process ${a.child.pid} (${a.label})`);
    return left;
  }
}
