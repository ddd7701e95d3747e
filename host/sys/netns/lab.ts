/**
 * A set of network namespaces, veths, addresses, routes, rules, sysctls and
 * processes made with iproute2, recorded as they are made so teardown()
 * removes all of it, in reverse order, also after a failure halfway through
 * a setup. What lives inside one of the lab's namespaces goes with the
 * namespace; only what was made elsewhere (the caller's namespace) is undone
 * one by one. sweep() removes what an earlier run that was killed left
 * behind, recognised by its name prefix.
 */
import { ip, linkNames, netnsList, netnsPids } from "./iproute2.js";
import { setSysctl } from "./enter.js";
import { spawnInNetns, type NetnsProcess, type SpawnInNetnsOptions } from "./process.js";

export type Family = 4 | 6;

/** One end of a veth pair: its name and namespace (undefined: the caller's). */
export interface VethEnd {
  name: string;
  ns?: string;
}

interface Undo {
  label: string;
  /** The namespace the object lives in; when it is one of the lab's, deleting the namespace undoes it. */
  ns?: string;
  run: () => void | Promise<void>;
}

const nsArgs = (ns: string | undefined): string[] => (ns === undefined ? [] : ["-n", ns]);

/** Whether `name` belongs to `prefix`: the prefix itself or "<prefix>-...". */
export function hasPrefix(name: string, prefix: string): boolean {
  return name === prefix || name.startsWith(`${prefix}-`);
}

export class NetnsLab {
  readonly processes = new Set<NetnsProcess>();
  /** Namespaces made and not yet deleted. */
  readonly #namespaces: string[] = [];
  /** Every namespace ever made, for leftovers(). */
  readonly #made: string[] = [];
  readonly #undo: Undo[] = [];
  readonly #links: VethEnd[] = [];

  /** `prefix` names everything the lab makes ("<prefix>-<name>"), so sweep(prefix) finds leftovers. */
  constructor(readonly prefix: string) {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(prefix)) throw new Error(`bad lab prefix ${JSON.stringify(prefix)}`);
  }

  get namespaces(): readonly string[] {
    return this.#namespaces;
  }

  /** Registers a step for teardown (run in reverse order of registration, before the namespaces go). */
  defer(label: string, run: () => void | Promise<void>, ns?: string): void {
    this.#undo.push({ label, ns, run });
  }

  /** Creates namespace "<prefix>-<name>" with its loopback up; returns its name. */
  addNamespace(name: string): string {
    const ns = `${this.prefix}-${name}`;
    ip("netns", "add", ns);
    this.#namespaces.push(ns);
    this.#made.push(ns);
    this.defer(`delete network namespace ${ns}`, () => {
      if (netnsList().includes(ns)) ip("netns", "del", ns);
    });
    ip("-n", ns, "link", "set", "lo", "up");
    return ns;
  }

  /** A veth pair made in place: `a` in its namespace, its peer `b` created directly in `b.ns`. Both left down. */
  addVeth(a: VethEnd, b: VethEnd): void {
    ip(...nsArgs(a.ns), "link", "add", a.name, "type", "veth", "peer", "name", b.name, ...(b.ns === undefined ? [] : ["netns", b.ns]));
    this.#links.push(a, b);
    // Deleting either end deletes the pair; when either end is in a lab namespace, deleting that namespace does.
    const inLab = [a.ns, b.ns].find((ns) => ns !== undefined && this.#namespaces.includes(ns));
    this.defer(`delete veth ${a.name}`, () => {
      if (linkNames(a.ns).includes(a.name)) ip(...nsArgs(a.ns), "link", "del", a.name);
    }, inLab);
  }

  addAddress(ns: string | undefined, dev: string, cidr: string, opts: { nodad?: boolean } = {}): void {
    ip(...nsArgs(ns), "addr", "add", cidr, "dev", dev, ...(opts.nodad ? ["nodad"] : []));
    this.defer(`delete address ${cidr} from ${dev}`, () => void ip(...nsArgs(ns), "addr", "del", cidr, "dev", dev), ns);
  }

  linkUp(ns: string | undefined, dev: string): void {
    ip(...nsArgs(ns), "link", "set", dev, "up");
  }

  /** `ip -<family> route add <spec...>` in `ns`. */
  addRoute(ns: string | undefined, family: Family, spec: string[]): void {
    ip(...nsArgs(ns), `-${family}`, "route", "add", ...spec);
    this.defer(`delete route ${spec.join(" ")}`, () => void ip(...nsArgs(ns), `-${family}`, "route", "del", ...spec), ns);
  }

  /** `ip -<family> rule add <spec...>` in `ns`. */
  addRule(ns: string | undefined, family: Family, spec: string[]): void {
    ip(...nsArgs(ns), `-${family}`, "rule", "add", ...spec);
    this.defer(`delete rule ${spec.join(" ")}`, () => void ip(...nsArgs(ns), `-${family}`, "rule", "del", ...spec), ns);
  }

  /** Sets a sysctl in one of the lab's namespaces (it goes with the namespace). */
  sysctl(ns: string, key: string, value: string | number): void {
    if (!this.#namespaces.includes(ns)) throw new Error(`sysctl ${key}: ${ns} is not one of this lab's namespaces`);
    setSysctl(ns, key, value);
  }

  /** Waits (bounded) until `dev` in `ns` is up with carrier. */
  async waitUp(ns: string | undefined, dev: string, ms = 5_000): Promise<void> {
    const deadline = Date.now() + ms;
    for (;;) {
      const shown = ip(...nsArgs(ns), "link", "show", dev);
      if (/\bLOWER_UP\b/.test(shown) && /\bstate UP\b/.test(shown)) return;
      if (Date.now() > deadline) throw new Error(`${dev}${ns ? ` in ${ns}` : ""} not up within ${ms} ms: ${shown.trim()}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** Starts a process in `ns`; teardown kills it if it is still running. */
  spawn(ns: string, argv: string[], opts?: SpawnInNetnsOptions): NetnsProcess {
    const p = spawnInNetns(ns, argv, opts);
    this.processes.add(p);
    void p.exited.then(() => this.processes.delete(p));
    return p;
  }

  /**
   * Kills the processes still running (bounded wait for their exit), runs the
   * registered steps in reverse (the namespaces go last, as they were made
   * first). Never throws: returns what could not be undone. Idempotent.
   */
  async teardown(): Promise<string[]> {
    const problems: string[] = [];
    const procs = [...this.processes];
    for (const p of procs) p.kill();
    await Promise.race([Promise.all(procs.map((p) => p.exited)), new Promise((r) => setTimeout(r, 3_000))]);
    for (const p of procs) if (p.running) problems.push(`${p.label} (pid ${p.child.pid}) still running after SIGKILL`);
    for (const ns of this.#namespaces) {
      try {
        // A process left in a namespace keeps it alive after `ip netns del` (the name goes, the namespace stays).
        if (netnsList().includes(ns)) {
          const pids = netnsPids(ns);
          if (pids.length) problems.push(`processes still in ${ns}: ${pids.join(" ")}`);
        }
      } catch (err) {
        problems.push((err as Error).message);
      }
    }
    const live = new Set(this.#namespaces);
    for (const step of this.#undo.splice(0).reverse()) {
      if (step.ns !== undefined && live.has(step.ns)) continue;
      try {
        await step.run();
      } catch (err) {
        problems.push(`${step.label}: ${(err as Error).message}`);
      }
    }
    try {
      const left = netnsList();
      for (const ns of this.#namespaces) if (left.includes(ns)) problems.push(`network namespace ${ns} still exists`);
    } catch (err) {
      problems.push((err as Error).message);
    }
    this.#namespaces.length = 0;
    return problems;
  }

  /**
   * What the lab made that is still visible from the caller's namespace
   * (after teardown: nothing): its namespaces, veth ends made in the caller's
   * namespace, links there named "<prefix>-...", running processes.
   */
  leftovers(): string[] {
    const left: string[] = [];
    for (const ns of netnsList()) if (this.#made.includes(ns)) left.push(`network namespace ${ns}`);
    const links = linkNames();
    for (const l of links) if (hasPrefix(l, this.prefix)) left.push(`link ${l}`);
    for (const end of this.#links) if (end.ns === undefined && links.includes(end.name)) left.push(`link ${end.name}`);
    for (const p of this.processes) if (p.running) left.push(`process ${p.child.pid} (${p.label})`);
    return [...new Set(left)];
  }
}

/**
 * Removes what an earlier run with this prefix left behind (it was killed
 * before its teardown): the processes in its namespaces (SIGKILL), the
 * namespaces, and links in the caller's namespace named "<prefix>-...".
 * Returns what it removed.
 */
export async function sweep(prefix: string): Promise<string[]> {
  const removed: string[] = [];
  const stale = netnsList().filter((ns) => hasPrefix(ns, prefix));
  for (const ns of stale) {
    for (const pid of netnsPids(ns)) {
      try {
        process.kill(pid, "SIGKILL");
        removed.push(`process ${pid} in ${ns}`);
      } catch {
        // gone meanwhile
      }
    }
  }
  if (removed.length) await new Promise((r) => setTimeout(r, 200));
  for (const ns of stale) {
    ip("netns", "del", ns);
    removed.push(`network namespace ${ns}`);
  }
  for (const link of linkNames().filter((l) => hasPrefix(l, prefix))) {
    ip("link", "del", link);
    removed.push(`link ${link}`);
  }
  return removed;
}
