/**
 * Real `membrane agent` processes for the agent tests: the compiled CLI run
 * as root inside a network namespace of the test's own (so its TUN device,
 * routes and rules never touch the machine's), with a state dir in a temp
 * dir. The namespace also has an interface with an address (src0, one end
 * of a veth pair), the source of the UDP flows udp-flows.mjs sends into the
 * agent's routes.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { afterAll, afterEach, beforeAll, expect } from "vitest";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NetnsLab, sweep } from "../../host/sys/netns/lab.js";
import { ip, iproute2Unavailable } from "../../host/sys/netns/iproute2.js";
import type { NetnsProcess } from "../../host/sys/netns/process.js";
import { packageRoot } from "../../host/package-root.js";
import { readSnapshotMeta, type SnapshotMeta } from "../../host/conntrack/snapshot.js";
import { libcLibrary } from "../../host/sys/libc.js";

export const CLI = join(packageRoot(), "dist/host/cli/main.js");
export const DEVICE = "mbrt0";
/** Where the flows go (routed into the agent's device) and where they come from (the dummy interface). */
export const FLOW_PREFIX = "10.77.0.0/24";
export const FLOW_DST = "10.77.0.2";
export const SOURCE_ADDR = "10.76.0.1";

/** Why agent processes cannot run here, or undefined. */
export function agentUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root (TUN device, routes, network namespaces)";
  if (!existsSync("/dev/net/tun")) return "/dev/net/tun is missing";
  const iproute2 = iproute2Unavailable();
  if (iproute2) return iproute2;
  if (!existsSync(CLI)) return `${CLI} is missing: run npx tsc -p tsconfig.build.json`;
  if (!existsSync(join(packageRoot(), "build/membrane.wasm"))) return "build/membrane.wasm is missing: run npm run build:wasm";
  return undefined;
}

/** One agent process: its stdout lines as they come, its stderr, its exit. */
export class AgentRun {
  constructor(readonly proc: NetnsProcess) {}

  get pid(): number {
    return this.proc.child.pid!;
  }

  get out(): string[] {
    return this.proc.lines.map(String);
  }

  get err(): string {
    return this.proc.stderr;
  }

  /** Waits (bounded) for a stdout line matching `re`; fails early when the agent exits first. */
  async line(re: RegExp, ms = 15_000): Promise<string> {
    return this.proc.waitLine(String(re), (l) => typeof l === "string" && re.test(l), ms);
  }

  /** The agent is forwarding: its "forwarding on" line. */
  forwarding(ms = 15_000): Promise<string> {
    return this.line(/^membrane agent: forwarding on /, ms);
  }

  /** Waits (bounded) for the exit: the code, or the signal that ended it. */
  async exit(ms = 15_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), ms)));
    const outcome = await Promise.race([this.proc.exited, timeout]);
    clearTimeout(timer);
    if (outcome === "timeout") {
      this.proc.kill();
      throw new Error(`agent ${this.pid} did not exit within ${ms} ms; stdout: ${this.out.join(" | ")}; stderr: ${this.err}`);
    }
    return { code: this.proc.child.exitCode, signal: this.proc.child.signalCode };
  }

  signal(sig: NodeJS.Signals): void {
    process.kill(this.pid, sig);
  }

  /**
   * A signal aimed at the agent's main thread (tgkill) rather than at the
   * process: pending beside a process-directed signal of the same number
   * instead of merging with it, so a stopped agent can be handed the same
   * signal twice and receive both when it continues.
   */
  signalThread(sig: "SIGINT" | "SIGTERM"): void {
    tgkill ??= libcLibrary().func("tgkill", "int", ["int", "int", "int"]);
    const rc = tgkill(this.pid, this.pid, sig === "SIGINT" ? 2 : 15) as number;
    if (rc !== 0) throw new Error(`tgkill ${this.pid} ${sig} failed`);
  }
}

let tgkill: ((...args: unknown[]) => unknown) | undefined;

/**
 * A describe block's lab: made before its tests (with UDP flows every
 * `trafficMs` when given), `use` told of it; the agents a test left running
 * killed after each test; torn down, and checked clean, after all.
 */
export function labForSuite(tag: string, trafficMs: number | undefined, use: (lab: AgentLab) => void): void {
  let lab: AgentLab | undefined;
  beforeAll(async () => {
    lab = await AgentLab.create(tag);
    if (trafficMs !== undefined) lab.startTraffic(trafficMs);
    use(lab);
  });
  afterEach(() => lab?.killAgents());
  afterAll(async () => expect(await lab?.teardown()).toEqual([]));
}

export class AgentLab {
  readonly lab: NetnsLab;
  readonly ns: string;
  readonly tmp: string;
  readonly stateDir: string;
  #traffic: NetnsProcess | undefined;
  readonly #agents = new Set<AgentRun>();

  private constructor(tag: string) {
    this.lab = new NetnsLab(`mbragent-${tag}${process.pid}`);
    this.ns = `${this.lab.prefix}-ns`;
    this.tmp = mkdtempSync(join(tmpdir(), `membrane-agent-${tag}-`));
    this.stateDir = join(this.tmp, "state");
  }

  /** A namespace with loopback and an interface carrying SOURCE_ADDR. `tag` keeps concurrent test files apart. */
  static async create(tag: string): Promise<AgentLab> {
    const t = new AgentLab(tag);
    await sweep(t.lab.prefix);
    try {
      t.lab.addNamespace("ns");
      // A veth pair with both ends in the namespace (no dummy driver needed): src0 carries the flows' source address.
      t.lab.addVeth({ ns: t.ns, name: "src0" }, { ns: t.ns, name: "src1" });
      t.lab.addAddress(t.ns, "src0", `${SOURCE_ADDR}/24`);
      t.lab.linkUp(t.ns, "src0");
      t.lab.linkUp(t.ns, "src1");
    } catch (err) {
      await t.teardown();
      throw err;
    }
    return t;
  }

  /** A state file with small tables: an agent starts in a fraction of the default's time. */
  smallConfig(): string {
    const path = join(this.tmp, "state.json");
    if (!existsSync(path)) writeFileSync(path, JSON.stringify({ conntrack: { tcpEntries: 4096, otherEntries: 16384 } }));
    return path;
  }

  /** Starts `membrane agent --datapath tun` in the namespace; `args` come after the defaults (device, state dir, config). */
  agent(args: string[] = [], opts: { stateDir?: string; config?: boolean; device?: string } = {}): AgentRun {
    const argv = [
      process.execPath, CLI, "agent", "--datapath", "tun", "--device", opts.device ?? DEVICE, "--state-dir", opts.stateDir ?? this.stateDir,
      ...(opts.config === false ? [] : ["--config", this.smallConfig()]), ...args,
    ];
    const run = new AgentRun(this.lab.spawn(this.ns, argv, { label: `agent ${args.join(" ")}` }));
    this.#agents.add(run);
    return run;
  }

  /** After a test: kills the agents it left running (a failed assertion must not leave one to the next test). */
  async killAgents(): Promise<void> {
    const left = [...this.#agents].filter((a) => a.proc.running);
    this.#agents.clear();
    for (const a of left) a.proc.kill();
    await Promise.all(left.map((a) => a.proc.exited));
  }

  /** UDP datagrams to FLOW_DST, each to the next port (a new conntrack entry each), `perSecond` of them, until teardown. */
  startTraffic(perSecond: number): void {
    if (this.#traffic) return;
    const script = join(packageRoot(), "test/agent/udp-flows.mjs");
    this.#traffic = this.lab.spawn(this.ns, [process.execPath, script, SOURCE_ADDR, FLOW_DST, String(perSecond)], { label: "udp-flows" });
  }

  async stopTraffic(): Promise<void> {
    const t = this.#traffic;
    this.#traffic = undefined;
    if (!t) return;
    t.kill();
    await t.exited;
  }

  ip(...args: string[]): string {
    return ip("-n", this.ns, ...args);
  }

  deviceExists(name = DEVICE): boolean {
    return this.ip("-o", "link", "show").split("\n").some((l) => l.split(/:\s+/)[1]?.split("@")[0] === name);
  }

  snapshotFile(): string {
    return join(this.stateDir, "conntrack.snap");
  }

  statusFile(): string {
    return join(this.stateDir, "status.json");
  }

  /** The header of the snapshot on disk (undefined: none, or not a v2 snapshot). */
  snapshotMeta(): SnapshotMeta | undefined {
    return existsSync(this.snapshotFile()) ? readSnapshotMeta(readFileSync(this.snapshotFile())) : undefined;
  }

  async teardown(): Promise<string[]> {
    const problems = await this.lab.teardown();
    rmSync(this.tmp, { recursive: true, force: true });
    return problems;
  }
}

/** The "(snapshot #N of pid P, run R, written ...)" part of a forwarding line. */
export function restoredFrom(line: string): { entries: number; sequence: number; pid: number; runId: string } | undefined {
  const m = /(\d+) conntrack entries restored \(snapshot #(\d+) of pid (\d+), run ([0-9a-f]+),/.exec(line);
  return m ? { entries: Number(m[1]), sequence: Number(m[2]), pid: Number(m[3]), runId: m[4] } : undefined;
}
