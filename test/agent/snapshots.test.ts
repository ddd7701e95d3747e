// The agent's conntrack snapshots on real agent processes under traffic (issue 19): a bad snapshot is
// refused whole with a way out (failure 6), snapshots are written while running, and a SIGKILL never
// brings back an older run's snapshot (failure 7).
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { expect, test } from "vitest";
import { describeIf } from "../support/describe-if.js";
import { AgentLab, labForSuite, agentUnavailable, FLOW_PREFIX, restoredFrom } from "./agent-lab.js";
import { waitFor } from "../support/wait-for.js";
import { parseSnapshot } from "../../host/conntrack/snapshot.js";
import { readStatus } from "../../host/agent/status-file.js";

const ctEntries = (bytes: Uint8Array) => parseSnapshot(bytes).tables.filter((t) => /^(tcp|any)[46]$/.test(t.table)).reduce((n, t) => n + t.records.length, 0);

describeIf("the agent's conntrack snapshots (issue 19, failures 6 and 7)", agentUnavailable(), () => {
  let lab!: AgentLab;
  labForSuite("snap", 200, (l) => (lab = l));

  /** Runs an agent until it has seen flows, then stops it cleanly: a snapshot with entries on disk. */
  async function cleanRun(args: string[] = []) {
    const agent = lab.agent(["--route", FLOW_PREFIX, ...args]);
    await agent.forwarding();
    await waitFor("flows in the agent's status", () => (readStatus(lab.stateDir)?.entries ?? 0) > 0, { timeoutMs: 10_000 });
    agent.signal("SIGINT");
    expect((await agent.exit()).code).toBe(0);
    return agent;
  }

  test("failure 6: a damaged snapshot stops the agent from starting (exit 2), says what is wrong and how to start without it, and is left as it was", async () => {
    await cleanRun();
    const damaged = readFileSync(lab.snapshotFile());
    damaged[damaged.length - 30] ^= 0x04;
    writeFileSync(lab.snapshotFile(), damaged);

    const refused = lab.agent(["--route", FLOW_PREFIX]);
    expect((await refused.exit()).code).toBe(2);
    expect(refused.err).toContain(`conntrack snapshot ${lab.snapshotFile()}: checksum mismatch: the file is damaged or truncated`);
    expect(refused.err).toContain("nothing was restored and nothing started. Start with --discard-snapshot");
    expect(refused.out.join("\n")).not.toContain("forwarding");
    expect(lab.deviceExists()).toBe(false);
    expect(Buffer.compare(readFileSync(lab.snapshotFile()), damaged)).toBe(0);

    const fresh = lab.agent(["--route", FLOW_PREFIX, "--discard-snapshot"]);
    const line = await fresh.forwarding();
    expect(line).toContain(", 0 conntrack entries restored;");
    expect(fresh.out.join("\n")).toContain(`--discard-snapshot: the last run's conntrack snapshot moved to ${lab.snapshotFile()}.discarded`);
    expect(Buffer.compare(readFileSync(`${lab.snapshotFile()}.discarded`), damaged)).toBe(0);
    fresh.signal("SIGINT");
    expect((await fresh.exit()).code).toBe(0);
  });

  test("failure 7: after a SIGKILL the next start restores the killed run's snapshot, never the one of the run before it", async () => {
    const a = await cleanRun();
    expect(lab.snapshotMeta()!.pid).toBe(a.pid);

    // b restores a's snapshot and is killed before any periodic write could happen (interval: an hour).
    const b = lab.agent(["--route", FLOW_PREFIX, "--snapshot-interval", "3600"]);
    expect(restoredFrom(await b.forwarding())).toMatchObject({ pid: a.pid });
    b.signal("SIGKILL");
    expect((await b.exit()).signal).toBe("SIGKILL");
    // On disk: b's own snapshot (written at its start, holding what it restored), not a's.
    const left = lab.snapshotMeta()!;
    expect(left.pid).toBe(b.pid);
    const entries = ctEntries(readFileSync(lab.snapshotFile()));

    const c = lab.agent(["--route", FLOW_PREFIX]);
    const from = restoredFrom(await c.forwarding())!;
    expect(from).toEqual({ entries, sequence: left.sequence, pid: b.pid, runId: left.runId });
    c.signal("SIGINT");
    expect((await c.exit()).code).toBe(0);
  });

  test("failure 7: snapshots are written while the agent runs, so a SIGKILL loses at most an interval", async () => {
    const agent = lab.agent(["--route", FLOW_PREFIX, "--snapshot-interval", "0.2"]);
    await agent.forwarding();
    // Three periodic writes after the one at start, each by this run, each holding flows.
    const meta = await waitFor(
      "three periodic snapshots",
      () => {
        const m = lab.snapshotMeta();
        return m && m.pid === agent.pid && m.sequence >= 3 ? m : undefined;
      },
      { timeoutMs: 10_000 },
    );
    expect(ctEntries(readFileSync(lab.snapshotFile()))).toBeGreaterThan(0);
    agent.signal("SIGKILL");
    expect((await agent.exit()).signal).toBe("SIGKILL");
    const last = lab.snapshotMeta()!;
    expect(last.runId).toBe(meta.runId);
    expect(last.sequence).toBeGreaterThanOrEqual(meta.sequence);
    const entries = ctEntries(readFileSync(lab.snapshotFile()));

    const next = lab.agent(["--route", FLOW_PREFIX]);
    expect(restoredFrom(await next.forwarding())).toEqual({ entries, sequence: last.sequence, pid: agent.pid, runId: last.runId });
    expect(existsSync(lab.statusFile())).toBe(true);
    next.signal("SIGINT");
    expect((await next.exit()).code).toBe(0);
  });
});
