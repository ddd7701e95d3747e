// issue 19 #2: concurrent state-file commands lost writes (20 `endpoint add` at once, 11 to 14 endpoints gone).
// 50 writer processes on one state file: every write that exits 0 is in the file at the end, and the file
// loads at every point during the run (polled while the writers run). Five ids are added twice with
// different addresses: exactly one of each pair succeeds, and the file holds the one that did.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { loadState } from "../../host/state/file.js";
import { packageRoot } from "../../host/package-root.js";
import { pause } from "../support/wait-for.js";

const root = packageRoot();
const MAIN = join(root, "dist/host/cli/main.js");
const dir = mkdtempSync(join(tmpdir(), "membrane-state-concurrency-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The CLI these processes run is the compiled one: it must be built from the sources under test. */
beforeAll(() => {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run npx tsc -p tsconfig.build.json (npm run build:host)`);
  for (const src of ["host/state/file.ts", "host/state/edits.ts", "host/state/schema.ts", "host/cli/policy.ts", "host/sys/file-lock.ts", "host/sys/atomic-file.ts"]) {
    const built = join(root, "dist", src.replace(/\.ts$/, ".js"));
    if (!existsSync(built) || statSync(built).mtimeMs < statSync(join(root, src)).mtimeMs) {
      throw new Error(`${built} is older than ${src}: run npx tsc -p tsconfig.build.json (npm run build:host)`);
    }
  }
});

interface Writer { id: number; ipv4: string; code?: number; err: string }

function runWriter(state: string, w: Writer): Promise<void> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN, "endpoint", "add", String(w.id), "--labels", `app=w${w.id}`, "--ipv4", w.ipv4, "--config", state], { stdio: ["ignore", "ignore", "pipe"] });
    child.stderr.on("data", (d) => { w.err += String(d); });
    child.on("close", (code) => { w.code = code ?? -1; resolve(); });
  });
}

describe("50 concurrent writer processes on one state file", () => {
  test("every write that exits 0 is in the file at the end, and the file loads at every point", async () => {
    const state = join(dir, "state.json");
    writeFileSync(state, JSON.stringify({ conntrack: { tcpEntries: 1024 } }));
    const writers: Writer[] = [];
    for (let id = 1; id <= 45; id++) writers.push({ id, ipv4: `10.1.0.${id}`, err: "" });
    for (let id = 1; id <= 5; id++) writers.push({ id, ipv4: `10.2.0.${id}`, err: "" });

    let running = true;
    let loads = 0;
    const loadFailures: string[] = [];
    const poller = (async () => {
      while (running) {
        try {
          loadState(state);
          loads++;
        } catch (err) {
          loadFailures.push((err as Error).message);
        }
        await pause(2); // pacing: read the state file again and again while the writers run
      }
    })();
    await Promise.all(writers.map((w) => runWriter(state, w)));
    running = false;
    await poller;

    expect(loadFailures).toEqual([]);
    expect(loads).toBeGreaterThan(0);
    const final = loadState(state);
    const held = new Map(final.engine.listEndpoints().map(({ record }) => [record.id, record.ipv4]));
    // Every write that exited 0 is in the file: none lost to another writer's read-modify-write.
    const lost = writers.filter((w) => w.code === 0 && held.get(w.id) !== w.ipv4).map((w) => `${w.id} ${w.ipv4}`);
    expect(lost).toEqual([]);
    // Only the second add of an id may fail, and only because the id exists (never a lock or write error).
    for (const w of writers.filter((x) => x.code !== 0)) expect(w.err).toContain(`endpoint ${w.id} exists already in ${state}`);
    expect(writers.filter((w) => w.code === 0)).toHaveLength(45);
    expect(held.size).toBe(45);
    expect(final.options.conntrack.tcpEntries).toBe(1024);
    expect(statSync(state).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(state, "utf8")).endpoints).toHaveLength(45);
  }, 300_000);
});
