// `membrane status` decides whether an agent runs from the state dir's lock and the age of its last report,
// never from a PID in the status file (issue 19, failure 11). The "agent" here is this test holding the
// lock, as a running agent does for its whole life.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { cli } from "../support/run-cli.js";
import { writeStatus, type AgentStatus } from "../../host/agent/status-file.js";
import { lockStateDir, stateDirHeld } from "../../host/agent/state-dir.js";

const root = mkdtempSync(join(tmpdir(), "membrane-liveness-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function status(pid: number, updatedAt: Date): AgentStatus {
  return {
    pid, datapath: "tun", device: "mbr7", mtu: 1500, routes: [], startedAt: updatedAt.toISOString(), updatedAt: updatedAt.toISOString(),
    restoredEntries: 0, entries: 0, reportEveryMs: 1000,
    stats: { batches: 0, reads: 0, writes: 0, packetsIn: 0, bytesIn: 0, packetsOut: 0, bytesOut: 0, dropped: 0, writeErrors: 0, gcRuns: 0, wirePacketsIn: 0, offloadUnwritable: 0 },
    counters: { forwarded: { egress: { packets: 0, bytes: 0 }, ingress: { packets: 0, bytes: 0 } }, drops: [], tables: {} as never },
    flows: [],
  };
}

let n = 0;
const newDir = () => {
  const dir = join(root, `state${n++}`);
  mkdirSync(dir, { mode: 0o700 });
  return dir;
};

describe("membrane status liveness (issue 19, failure 11)", () => {
  test("a status file naming a live PID, with no agent holding the state dir, shows no agent running", async () => {
    const dir = newDir();
    // The PID is alive (it is this test's): the old check, kill(pid, 0), took that for a running agent.
    writeStatus(dir, status(process.pid, new Date()));
    const r = await cli("status", "--state-dir", dir);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`no membrane agent is running (no agent holds ${dir}) (the status file there is left from pid ${process.pid}, which did not stop cleanly)`);
    expect(r.out).toBe("");
  });

  test("while the state dir is held and the report is fresh, the agent is running", async () => {
    const dir = newDir();
    const lock = await lockStateDir(dir, () => undefined);
    try {
      expect(stateDirHeld(dir)).toBe(true);
      writeStatus(dir, status(424242, new Date()));
      const r = await cli("status", "--state-dir", dir);
      expect(r.code).toBe(0);
      expect(r.err).toBe("");
      expect(r.out).toContain("agent pid 424242, datapath tun on mbr7");
    } finally {
      lock.release();
    }
    expect(stateDirHeld(dir)).toBe(false);
    expect((await cli("status", "--state-dir", dir)).code).toBe(1);
  });

  test("a held state dir whose last report is old is shown with a warning that the agent may be stuck", async () => {
    const dir = newDir();
    const lock = await lockStateDir(dir, () => undefined);
    try {
      writeStatus(dir, status(424243, new Date(Date.now() - 90_000)));
      const r = await cli("status", "--state-dir", dir);
      expect(r.code).toBe(0);
      expect(r.err).toMatch(/warning: the agent's last report is 9\d s old \(it reports every 1 s\): it holds .* but may be stuck/);
      expect(JSON.parse((await cli("status", "--state-dir", dir, "--json")).out).stale).toBe(true);
    } finally {
      lock.release();
    }
  });

  test("a status file of the wrong shape is a clear error naming the file, not a stack trace", async () => {
    const dir = newDir();
    const lock = await lockStateDir(dir, () => undefined);
    try {
      writeFileSync(join(dir, "status.json"), JSON.stringify({ pid: "twelve" }));
      const r = await cli("status", "--state-dir", dir);
      expect(r.code).toBe(2);
      expect(r.err).toBe(`membrane: status file ${join(dir, "status.json")}: pid: expected a number; is it a membrane agent's status file?`);
    } finally {
      lock.release();
    }
  });
});
