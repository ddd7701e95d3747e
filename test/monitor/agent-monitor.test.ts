// `membrane monitor` against a running agent (state-file mode, in a namespace
// of this test's own), over the agent's 0600 API socket: in drop-only mode it
// shows the drops of the traffic the policy denies, with the reason and the
// endpoint, and nothing of the allowed traffic; filters narrow what it shows;
// a bad filter is refused before anything is turned on.
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { NetnsLab } from "../../host/sys/netns/lab.js";
import { agentUnavailable } from "../agent/agent-lab.js";
import { describeIf } from "../support/describe-if.js";
import { monitorChild } from "./monitor-child.js";
import { waitFor } from "../support/wait-for.js";
import { policyLab, policyStateFile, sendUdp, startPolicyAgent } from "./policy-lab.js";

const monitor = monitorChild;

describeIf("membrane monitor on a running agent", agentUnavailable(), () => {
  const dir = mkdtempSync(join(tmpdir(), "membrane-ob-monitor-"));
  let lab: NetnsLab;
  let ns: string;
  let socket: string;
  const children: ReturnType<typeof monitor>[] = [];

  beforeAll(async () => {
    ({ lab, ns } = await policyLab(`ob-mon${process.pid}`));
    await startPolicyAgent(lab, ns, dir, await policyStateFile(dir));
    socket = join(dir, "state", "agent.sock");
  }, 60_000);

  afterAll(async () => {
    for (const m of children) if (m.child.exitCode === null) { m.child.kill("SIGTERM"); await m.exited; }
    await lab?.teardown();
    rmSync(dir, { recursive: true, force: true });
  });

  it("drop-only: the denied traffic's drops with reason and endpoint, nothing of the allowed", async () => {
    expect(statSync(socket).mode & 0o777).toBe(0o600);
    const m = monitor(["--type", "drop", "--json", "--socket", socket, "--count", "3"]);
    children.push(m);
    await waitFor("the monitor listening", () => m.err.includes("listening"), { detail: () => m.err });
    sendUdp(ns, 7000, 4); // allowed: nothing to show
    sendUdp(ns, 7001, 3); // denied by the policy
    expect(await m.exited).toBe(0);
    const events = m.out.map((l) => JSON.parse(l));
    expect(events).toHaveLength(3);
    for (const e of events) {
      expect(e).toMatchObject({ type: "drop", engine: "wasm", reason: "DROP_POLICY", reasonText: "Policy denied", direction: "EGRESS", endpoint: 1, src: "10.91.0.1", dst: "10.92.0.2", dport: 7001, proto: "UDP" });
    }
  });

  it("one line per event for people; filters by port and type", async () => {
    const m = monitor(["--type", "trace", "--type", "policy-verdict", "--port", "7000", "--socket", socket, "--count", "2"]);
    children.push(m);
    await waitFor("the monitor listening", () => m.err.includes("listening"), { detail: () => m.err });
    sendUdp(ns, 7001, 2); // denied: neither a trace nor port 7000
    sendUdp(ns, 7000, 1, 41000); // a new flow: its verdict and its trace
    expect(await m.exited).toBe(0);
    expect(m.out[0]).toMatch(/^Policy verdict allowed EGRESS ep 1 identity \d+ 10\.91\.0\.1:41000 -> 10\.92\.0\.2:7000 UDP$/);
    expect(m.out[1]).toBe("-> trace EGRESS ep 1 10.91.0.1:41000 -> 10.92.0.2:7000 UDP CT_NEW len 39");
  });

  it("refuses a bad filter with the agent's reason (exit 2)", async () => {
    const m = monitor(["--type", "drops", "--socket", socket]);
    expect(await m.exited).toBe(2);
    expect(m.err).toContain('type "drops" is not one of drop, trace, policy-verdict');
    const r = monitor(["--reason", "nope", "--socket", socket]);
    expect(await r.exited).toBe(2);
    expect(r.err).toContain('drop reason "nope" is unknown');
  });
});
