// Signals during the agent's shutdown (issue 19, failure 8), on real agent processes under traffic. To land
// a second and third signal inside the shutdown deterministically, the agent is stopped (SIGSTOP), handed
// the signals, and continued: they are then all delivered at once, before the shutdown can have moved on.
// Two SIGINTs cannot both be pending on a process (standard signals merge), so one is aimed at the main
// thread (tgkill) and one at the process.
import { EventEmitter } from "node:events";
import { existsSync, readFileSync } from "node:fs";
import { describe, expect, test } from "vitest";
import { describeIf } from "../support/describe-if.js";
import { AgentLab, labForSuite, agentUnavailable, FLOW_PREFIX } from "./agent-lab.js";
import { waitFor } from "../support/wait-for.js";
import { parseSnapshot } from "../../host/conntrack/snapshot.js";
import { readStatus } from "../../host/agent/status-file.js";
import { ShutdownSignals, type ShutdownSignal } from "../../host/agent/signals.js";

describe("ShutdownSignals, the agent's answer to SIGINT and SIGTERM", () => {
  test("the first requests a stop, the second is reported and ignored, the third forces an exit saying what is lost", async () => {
    const source = new EventEmitter();
    const out: string[] = [], err: string[] = [];
    const forced: Array<[ShutdownSignal, number]> = [];
    const signals = new ShutdownSignals({ out: (l) => out.push(l), err: (l) => err.push(l) }, {
      lost: () => "the conntrack changes of the last 2 s",
      force: (s, code) => forced.push([s, code]),
    }, source as never);
    source.emit("SIGTERM", "SIGTERM");
    expect(await signals.requested).toBe("SIGTERM");
    expect(out).toEqual(["membrane agent: SIGTERM: stopping (saving conntrack, removing routes)"]);
    source.emit("SIGINT", "SIGINT");
    expect(err).toEqual(["membrane agent: SIGINT again: still stopping, ignored; one more forces an exit and loses the conntrack changes of the last 2 s"]);
    expect(forced).toEqual([]);
    source.emit("SIGINT", "SIGINT");
    expect(err[1]).toBe("membrane agent: SIGINT: forced exit: the conntrack changes of the last 2 s lost");
    expect(forced).toEqual([["SIGINT", 130]]);
    signals.dispose();
    expect(source.listenerCount("SIGINT") + source.listenerCount("SIGTERM")).toBe(0);
  });
});

describeIf("agent signals (issue 19, failure 8)", agentUnavailable(), () => {
  let lab!: AgentLab;
  labForSuite("sig", 200, (l) => (lab = l));

  const ctEntries = (bytes: Uint8Array) => parseSnapshot(bytes).tables.filter((t) => /^(tcp|any)[46]$/.test(t.table)).reduce((n, t) => n + t.records.length, 0);

  test("a second SIGINT during shutdown is reported and ignored: conntrack is saved and no status file is left", async () => {
    const agent = lab.agent(["--route", FLOW_PREFIX]);
    await agent.forwarding();
    await waitFor("flows in the agent's status", () => (readStatus(lab.stateDir)?.entries ?? 0) > 0, { timeoutMs: 10_000 });

    agent.signal("SIGSTOP");
    agent.signalThread("SIGINT");
    agent.signal("SIGINT");
    agent.signal("SIGCONT");
    const { code, signal } = await agent.exit();
    // Exited, not killed: a forced exit that aborted (SIGABRT while an I/O thread started) has code null.
    expect(signal, agent.err).toBeNull();

    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(agent.err).toContain("SIGINT again: still stopping, ignored; one more forces an exit and loses the conntrack changes since the snapshot of");
    const stopped = await agent.line(/stopped after .* (\d+) conntrack entries saved/);
    const saved = Number(/(\d+) conntrack entries saved/.exec(stopped)![1]);
    expect(saved).toBeGreaterThan(0);
    // The snapshot on disk is the one written at this stop, with what the agent said it saved.
    const snap = readFileSync(lab.snapshotFile());
    expect(lab.snapshotMeta()!.pid).toBe(agent.pid);
    expect(ctEntries(snap)).toBe(saved);
    expect(existsSync(lab.statusFile())).toBe(false);
  });

  test("a third forces an exit that says what is lost, and still leaves no status file and no rule behind", async () => {
    const agent = lab.agent(["--route", FLOW_PREFIX, "--route-table", "100", "--route-rule", "from 10.76.0.0/24 pref 100"]);
    await agent.forwarding();
    expect(lab.ip("-4", "rule", "show", "pref", "100")).toContain("lookup 100");

    agent.signal("SIGSTOP");
    agent.signalThread("SIGINT");
    agent.signal("SIGINT");
    agent.signal("SIGTERM");
    agent.signal("SIGCONT");
    const { code, signal } = await agent.exit();
    // Exited, not killed: a forced exit that aborted (SIGABRT while an I/O thread started) has code null.
    expect(signal, agent.err).toBeNull();

    // 128 + the third signal's number: which of SIGINT and SIGTERM is delivered last is the kernel's choice.
    expect([130, 143]).toContain(code);
    expect(agent.err).toMatch(/forced exit: (the conntrack changes since the snapshot of [\d.]+ s ago \(\d+ entries\)|the conntrack state \(no snapshot written yet\)) lost/);
    expect(existsSync(lab.statusFile())).toBe(false);
    expect(lab.ip("-4", "rule", "show", "pref", "100").trim()).toBe("");
    expect(lab.deviceExists()).toBe(false);
  });
});
