/**
 * The crash test (issue 19): a real `membrane agent` under traffic, killed
 * with SIGKILL at random moments 20 times (seeded; MEMBRANE_CRASH_SEED picks
 * another sequence), in a network namespace of its own (mbragent-crash<pid>-ns,
 * test/agent/agent-lab.ts). A quarter of the kills land during start-up
 * (anywhere from spawn to a while after "forwarding"), the rest while it
 * forwards. After every kill:
 * - the snapshot on disk is whole (it passes every check of parseSnapshot);
 * - the next start succeeds and restores exactly that snapshot (same run id,
 *   sequence and writer pid; the entries it says it restored are the ones
 *   in the file): nothing older comes back;
 * - that snapshot is no older than one snapshot interval at the moment its
 *   writer was killed, plus SLACK_MS for the write itself and scheduling on
 *   a loaded machine (the measured ages are printed).
 * Finally a clean start and stop.
 */
import { readFileSync } from "node:fs";
import { expect, test } from "vitest";
import { describeIf } from "../support/describe-if.js";
import { AgentLab, labForSuite, agentUnavailable, FLOW_PREFIX, restoredFrom, type AgentRun } from "../agent/agent-lab.js";
import { parseSnapshot, type SnapshotMeta } from "../../host/conntrack/snapshot.js";
import { pause } from "../support/wait-for.js";
import { seededRandom } from "../support/seeded-random.js";

const KILLS = 20;
const INTERVAL_S = 0.25;
const INTERVAL_MS = INTERVAL_S * 1000;
/** The write of a snapshot, the worker noticing it is due, and a busy machine's scheduling. */
const SLACK_MS = 1000;
const SEED = Number(process.env.MEMBRANE_CRASH_SEED ?? 19);


const ctEntries = (bytes: Uint8Array) => parseSnapshot(bytes).tables.filter((t) => /^(tcp|any)[46]$/.test(t.table)).reduce((n, t) => n + t.records.length, 0);

describeIf("the agent killed with SIGKILL at random moments (issue 19, crash test)", agentUnavailable(), () => {
  let lab!: AgentLab;
  labForSuite("crash", 200, (l) => (lab = l));

  test(`${KILLS} kills (seed ${SEED}): every restart succeeds and restores the newest snapshot, no older than one interval`, async () => {
    const random = seededRandom(SEED); // a failing sequence of kill moments replays from its seed
    const killedAt = new Map<number, number>();
    const ages: number[] = [];
    const args = ["--route", FLOW_PREFIX, "--snapshot-interval", String(INTERVAL_S)];
    let restarts = 0;

    /** What a start must restore: the snapshot on disk now (undefined before the first run). */
    const onDisk = (): { meta: SnapshotMeta; entries: number } | undefined => {
      const meta = lab.snapshotMeta();
      return meta && { meta, entries: ctEntries(readFileSync(lab.snapshotFile())) };
    };

    /** The checks on a start that reached "forwarding". */
    const checkRestore = (line: string, expected: ReturnType<typeof onDisk>, kill: number) => {
      if (!expected) {
        expect(line, `kill ${kill}`).toContain(", 0 conntrack entries restored;");
        return;
      }
      const { meta, entries } = expected;
      expect(restoredFrom(line), `kill ${kill}: ${line}`).toEqual({ entries, sequence: meta.sequence, pid: meta.pid, runId: meta.runId });
      const age = killedAt.get(meta.pid)! - meta.writtenAt;
      ages.push(age);
      expect(age, `kill ${kill}: the snapshot restored was ${age} ms old when pid ${meta.pid} was killed`).toBeLessThanOrEqual(INTERVAL_MS + SLACK_MS);
    };

    for (let kill = 1; kill <= KILLS; kill++) {
      const expected = onDisk();
      const duringStartup = random() < 0.25;
      const delay = duringStartup ? random() * 700 : random() * 3 * INTERVAL_MS;
      const agent: AgentRun = lab.agent(args);
      // A random moment to kill at: the pauses deliberately let time pass, there is nothing to wait on.
      if (duringStartup) {
        await pause(delay);
        const line = agent.out.find((l) => l.startsWith("membrane agent: forwarding on "));
        if (line) checkRestore(line, expected, kill);
      } else {
        checkRestore(await agent.forwarding(), expected, kill);
        restarts++;
        await pause(delay);
      }
      killedAt.set(agent.pid, Date.now());
      agent.signal("SIGKILL");
      const end = await agent.exit();
      expect(end, `kill ${kill}: the agent ended before it was killed; stderr: ${agent.err}`).toEqual({ code: null, signal: "SIGKILL" });
      expect(agent.err, `kill ${kill}`).toBe("");
    }

    const expected = onDisk();
    const last = lab.agent(args);
    checkRestore(await last.forwarding(), expected, KILLS + 1);
    last.signal("SIGINT");
    expect((await last.exit()).code).toBe(0);

    console.log(`agent crash test (seed ${SEED}): ${KILLS} kills, ${restarts} while forwarding; restored snapshots were ${Math.min(...ages)}..${Math.max(...ages)} ms old at the kill (interval ${INTERVAL_MS} ms)`);
    expect(restarts).toBeGreaterThan(KILLS / 2);
  }, 120_000);
});
