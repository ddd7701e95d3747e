// The agent's state dir on real agent processes (issue 19): one agent per dir (failure 9), a path that is
// not a directory (10), a dir that does not exist yet (10), private files written without following a
// planted symlink (13), and a status file in place the moment the agent says it forwards (14).
import { existsSync, lstatSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect, test } from "vitest";
import { describeIf } from "../support/describe-if.js";
import { AgentLab, labForSuite, agentUnavailable, FLOW_PREFIX } from "./agent-lab.js";
import { readStatus } from "../../host/agent/status-file.js";
import { cli } from "../support/run-cli.js";

const mode = (path: string) => statSync(path).mode & 0o777;

describeIf("the agent's state dir (issue 19, failures 9, 10, 13, 14)", agentUnavailable(), () => {
  let lab!: AgentLab;
  labForSuite("dir", undefined, (l) => (lab = l));

  test("failure 9: a second agent on a state dir in use exits 2 before it touches a route or a device", async () => {
    const first = lab.agent(["--route", FLOW_PREFIX]);
    await first.forwarding();
    const second = lab.agent(["--route", "10.78.0.0/24"], { device: "mbrt1" });
    const { code } = await second.exit();
    expect(code).toBe(2);
    expect(second.err).toContain(`--state-dir ${lab.stateDir} is in use by another membrane agent (pid ${first.pid}, forwarding on mbrt0`);
    expect(second.err).toContain("stop it first, or give this one its own --state-dir");
    expect(second.out.join("\n")).not.toContain("forwarding");
    expect(lab.deviceExists("mbrt1")).toBe(false);
    expect(lab.ip("route", "show", "10.78.0.0/24").trim()).toBe("");
    // The first agent is untouched: still its status, its route, its device.
    expect(readStatus(lab.stateDir)!.pid).toBe(first.pid);
    expect(lab.ip("route", "show", FLOW_PREFIX)).toContain("dev mbrt0");
    first.signal("SIGINT");
    expect((await first.exit()).code).toBe(0);
  });

  test("failure 10: a --state-dir that is a regular file is refused (exit 2) with a clear message, nothing started", async () => {
    const file = join(lab.tmp, "not-a-dir");
    writeFileSync(file, "someone's file\n");
    const agent = lab.agent(["--route", FLOW_PREFIX], { stateDir: file });
    const { code } = await agent.exit();
    expect(code).toBe(2);
    expect(agent.err.trim()).toBe(`membrane: --state-dir ${file} exists and is not a directory`);
    expect(lab.deviceExists()).toBe(false);
    expect(lab.ip("route", "show", FLOW_PREFIX).trim()).toBe("");
    expect(readFileSync(file, "utf8")).toBe("someone's file\n");
  });

  test("failure 10: a state dir that does not exist is created (0700) before forwarding, so an agent stopped at once keeps its snapshot", async () => {
    const dir = join(lab.tmp, "new", "state");
    const agent = lab.agent(["--route", FLOW_PREFIX], { stateDir: dir });
    await agent.forwarding();
    expect(mode(dir)).toBe(0o700);
    expect(existsSync(join(dir, "conntrack.snap"))).toBe(true);
    // Stopped long before its first report (one second).
    agent.signal("SIGINT");
    expect((await agent.exit()).code).toBe(0);
    expect(await agent.line(/conntrack entries saved/)).toBeTruthy();
    expect(existsSync(join(dir, "conntrack.snap"))).toBe(true);
  });

  test("failure 13: status and snapshot are 0600 in a 0700 dir, and a symlink planted at status.json.tmp is not followed", async () => {
    const dir = join(lab.tmp, "private");
    mkdirSync(dir, { mode: 0o700 });
    const victim = join(lab.tmp, "victim");
    writeFileSync(victim, "victim\n", { mode: 0o644 });
    symlinkSync(victim, join(dir, "status.json.tmp"));
    const agent = lab.agent(["--route", FLOW_PREFIX], { stateDir: dir });
    await agent.forwarding();
    expect(mode(dir)).toBe(0o700);
    expect(mode(join(dir, "status.json"))).toBe(0o600);
    expect(mode(join(dir, "conntrack.snap"))).toBe(0o600);
    expect(lstatSync(join(dir, "status.json")).isFile()).toBe(true);
    agent.signal("SIGINT");
    expect((await agent.exit()).code).toBe(0);
    expect(readFileSync(victim, "utf8")).toBe("victim\n");
    expect(mode(victim)).toBe(0o644);
  });

  test("failure 14: `membrane status` finds the agent the moment it prints that it is forwarding", async () => {
    const agent = lab.agent(["--route", FLOW_PREFIX]);
    await agent.forwarding();
    const status = await cli("status", "--state-dir", lab.stateDir);
    expect(status.err).toBe("");
    expect(status.code).toBe(0);
    expect(status.out).toContain(`agent pid ${agent.pid}, datapath tun on mbrt0`);
    agent.signal("SIGTERM");
    expect((await agent.exit()).code).toBe(0);
    expect((await cli("status", "--state-dir", lab.stateDir)).err).toContain("no membrane agent is running");
  });
});
