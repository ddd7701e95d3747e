/**
 * The kvstore a simulation runs against: `etcd` (a private etcd started on
 * loopback, a temp data dir, stopped by PID), `etcd:<endpoints>` (one that
 * runs already) or `embedded:<path>`. `open()` is one new client each time:
 * for etcd one connection, which the etcd3 client multiplexes every watch of
 * its agents over.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openKvStore, parseKvStoreSpec } from "../kvstore/open.js";
import type { KvStore } from "../kvstore/store.js";
import { EtcdProcess } from "../sys/etcd-process.js";
import { processMemory, type ProcessMemory } from "../sys/process-memory.js";
import { processCpuSeconds } from "../sys/process-cpu.js";

export interface SimStore {
  backend: "etcd" | "embedded";
  location: string;
  open(): Promise<KvStore>;
  /** The private etcd's memory (undefined for others). */
  memory(): ProcessMemory | undefined;
  /** CPU seconds the private etcd has used so far (undefined for others). */
  cpuSeconds(): number | undefined;
  stop(): Promise<void>;
}

/**
 * Per-call deadline of the simulator's etcd clients: the agent's own (5 s).
 * Whole-prefix lists needed 120 s here (a few hundred agents listing a large
 * cluster at once timed out together and listed again together, for ever);
 * lists are now paged and the deadline applies to one page.
 */
export const DEFAULT_CALL_TIMEOUT_MS = 5000;

export async function startSimStore(spec: string, etcdBinary?: string, callTimeoutMs = DEFAULT_CALL_TIMEOUT_MS): Promise<SimStore> {
  if (spec === "etcd") {
    const etcd = await EtcdProcess.start({ binary: etcdBinary });
    // Interrupted (Ctrl-C, a timeout's SIGTERM): the private etcd goes too, by its PID, with its data dir.
    const onSignal = (signal: NodeJS.Signals) => {
      void etcd.stop().finally(() => process.kill(process.pid, signal));
    };
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    const forget = () => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    };
    return {
      backend: "etcd",
      location: `private etcd ${etcd.endpoint} (pid ${etcd.pid})`,
      open: () => openKvStore(etcd.spec, { etcd: { dialTimeoutMs: callTimeoutMs } }),
      memory: () => (etcd.pid === undefined ? undefined : processMemory(etcd.pid)),
      cpuSeconds: () => (etcd.pid === undefined ? undefined : processCpuSeconds(etcd.pid)),
      stop: () => (forget(), etcd.stop()),
    };
  }
  const parsed = parseKvStoreSpec(spec, "--kvstore");
  if (parsed.backend === "etcd") {
    return { backend: "etcd", location: parsed.endpoints.join(","), open: () => openKvStore(parsed, { etcd: { dialTimeoutMs: callTimeoutMs } }), memory: () => undefined, cpuSeconds: () => undefined, stop: async () => {} };
  }
  return { backend: "embedded", location: parsed.path, open: () => openKvStore(parsed), memory: () => undefined, cpuSeconds: () => undefined, stop: async () => {} };
}

/** A fresh embedded store in a temp dir (tests, and `--kvstore embedded` without a path). */
export function tempEmbeddedSpec(): { spec: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "membrane-sim-"));
  return { spec: `embedded:${join(dir, "store")}`, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
