/**
 * Why the embedded kvstore takes `<path>/write.lock` around every open,
 * commit and close (host/kvstore/embedded/embedded-store.ts): LMDB itself,
 * driven by lmdb-js with no membrane code in between, with and without that
 * lock, in the same run.
 *
 *   npm run bench:lmdb-open-race [-- --runs 4 --commits 20000]
 *
 * Two scenarios, each on a fresh environment in a temp dir:
 * - commits vs opens: one process commits read-increment-write transactions
 *   on a counter while two processes open and close the environment in a
 *   loop. Every commit that returned must be counted; a smaller final counter
 *   is an acknowledged commit overwritten (an open set the shared "last
 *   transaction" back, mdb_env_open2).
 * - opens vs opens: two processes open and close for 3 s, nobody else holds
 *   the environment open; a failed open ("No transaction to renew") counts.
 * The race is timing-dependent: a scenario that shows no failure in a few
 * runs has not shown the code safe; the "lock" rows must show none ever.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { open } from "lmdb";
import { openSectionLock, type SectionLock } from "../host/sys/file-lock.js";
import { num, printTable } from "./report.js";

type Mode = "none" | "lock";

interface ChildResult {
  lost?: number;
  opens?: number;
  error?: string;
}

/** A writer commits `commits` increments; an opener opens and closes until `<dir>/stop` exists. */
async function child(role: string, dir: string, mode: Mode, commits: number): Promise<ChildResult> {
  const lock: SectionLock | undefined = mode === "lock" ? openSectionLock(join(dir, "write.lock")) : undefined;
  const sync = <T>(fn: () => T): T => (lock ? lock.exclusive(fn) : fn());
  const later = <T>(fn: () => Promise<T>): Promise<T> => (lock ? lock.exclusiveAsync(fn) : fn());
  const openEnv = () => sync(() => open<number, string>({ path: join(dir, "db"), overlappingSync: true }));
  if (role === "writer") {
    const db = openEnv();
    const start = db.get("c") ?? 0;
    for (let i = 0; i < commits; i++) sync(() => db.transactionSync(() => db.putSync("c", (db.get("c") ?? 0) + 1)));
    await db.flushed;
    const lost = commits - ((db.get("c") ?? 0) - start);
    await later(() => db.close());
    return { lost };
  }
  let opens = 0;
  try {
    while (!existsSync(join(dir, "stop"))) {
      const db = openEnv();
      db.get("c");
      await later(() => db.close());
      opens++;
    }
  } catch (err) {
    return { opens, error: (err as Error).message };
  }
  return { opens };
}

function spawnChild(role: string, dir: string, mode: Mode, amount: number): Promise<ChildResult> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [process.argv[1]!, "--child", role, dir, mode, String(amount)], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    p.stdout.on("data", (d: Buffer) => (out += d.toString()));
    p.stderr.on("data", (d: Buffer) => (err += d.toString()));
    p.once("exit", (code) => {
      const last = out.trim().split("\n").at(-1) ?? "";
      try {
        resolve(JSON.parse(last) as ChildResult);
      } catch {
        // a crash inside LMDB (seen: MDB_PROBLEM "mdb_page_touch no parent") ends the process without a result
        resolve({ error: `exit ${code}: ${(err.trim().split("\n").find((l) => l.startsWith("Error")) ?? err.trim().split("\n")[0] ?? "").slice(0, 120)}` });
      }
    });
  });
}

interface Tally {
  runs: number;
  lost: number;
  runsWithLoss: number;
  failedProcesses: number;
  opens: number;
  errors: Set<string>;
}

async function scenario(mode: Mode, withWriter: boolean, runs: number, commits: number): Promise<Tally> {
  const t: Tally = { runs, lost: 0, runsWithLoss: 0, failedProcesses: 0, opens: 0, errors: new Set() };
  for (let r = 0; r < runs; r++) {
    const dir = mkdtempSync(join(tmpdir(), "membrane-lmdb-race-"));
    try {
      await spawnChild("writer", dir, mode, 1); // create the environment
      const openers = [spawnChild("opener", dir, mode, 0), spawnChild("opener", dir, mode, 0)];
      const results: ChildResult[] = [];
      if (withWriter) {
        const writer = await spawnChild("writer", dir, mode, commits);
        results.push(writer);
        if (writer.lost) {
          t.lost += writer.lost;
          t.runsWithLoss++;
        }
      } else {
        await new Promise((r) => setTimeout(r, 3000));
      }
      writeFileSync(join(dir, "stop"), ""); // the openers loop until this file exists
      results.push(...(await Promise.all(openers)));
      for (const x of results) {
        t.opens += x.opens ?? 0;
        if (x.error) {
          t.failedProcesses++;
          t.errors.add(x.error);
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return t;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === "--child") {
    const [, role, dir, mode, amount] = argv;
    process.stdout.write(`${JSON.stringify(await child(role!, dir!, mode as Mode, Number(amount)))}\n`);
    return;
  }
  const { values } = parseArgs({ args: argv, options: { runs: { type: "string", default: "4" }, commits: { type: "string", default: "20000" } } });
  const runs = Number(values.runs);
  const commits = Number(values.commits);
  const rows: Array<Record<string, string>> = [];
  let lockFailures = 0;
  for (const withWriter of [true, false]) {
    for (const mode of ["none", "lock"] as const) {
      const t = await scenario(mode, withWriter, runs, commits);
      if (mode === "lock") lockFailures += t.lost + t.failedProcesses;
      rows.push({
        scenario: withWriter ? `${num(commits)} commits vs 2 openers` : "2 openers, 3 s",
        lock: mode === "lock" ? "write.lock" : "none",
        runs: String(t.runs),
        "lost commits": withWriter ? `${t.lost} (in ${t.runsWithLoss} runs)` : "-",
        "failed processes": String(t.failedProcesses),
        opens: num(t.opens),
        errors: [...t.errors].join("; ").slice(0, 100),
      });
    }
  }
  printTable("LMDB: opens racing commits and opens, without and with write.lock", rows, [
    "a 'none' row without failures proves nothing (the race is timing-dependent); a 'write.lock' row must never fail",
  ]);
  console.log(lockFailures === 0 ? "\nwith write.lock: no lost commit, no failed process" : `\nwith write.lock: ${lockFailures} failures: NOT MET`);
  if (lockFailures > 0) process.exitCode = 1;
}

await main();
