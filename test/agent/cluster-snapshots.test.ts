// The cluster-mode agent (`--kvstore ... --node ...`) writes its conntrack snapshots every
// --snapshot-interval, as the state-file agent does (a real agent process in a namespace of the
// test's own, with an embedded kvstore in a temp dir). Without the flag passed on, its snapshots
// came every 10 s whatever was asked.
import { join } from "node:path";
import { expect, test } from "vitest";
import { describeIf } from "../support/describe-if.js";
import { AgentLab, labForSuite, agentUnavailable } from "./agent-lab.js";
import { waitFor } from "../support/wait-for.js";

describeIf("the cluster agent's conntrack snapshots", agentUnavailable(), () => {
  let lab!: AgentLab;
  labForSuite("cgsnap", undefined, (l) => (lab = l));

  test("--snapshot-interval 0.2 in cluster mode: several periodic snapshots by this run within a few seconds", async () => {
    const agent = lab.agent([
      "--kvstore", `embedded:${join(lab.tmp, "store")}`, "--node", "n1", "--node-ip", "10.0.0.1", "--pod-cidr", "10.1.0.0/24",
      "--snapshot-interval", "0.2",
    ], { config: false });
    await agent.forwarding(30_000);
    const startSeq = await waitFor("the snapshot written at start", () => {
      const m = lab.snapshotMeta();
      return m && m.pid === agent.pid ? m.sequence : undefined;
    }, { timeoutMs: 10_000 });
    // At 0.2 s, three more come well inside 5 s; at the 10 s default none would.
    const meta = await waitFor("three periodic snapshots after the first", () => {
      const m = lab.snapshotMeta();
      return m && m.pid === agent.pid && m.sequence >= startSeq + 3 ? m : undefined;
    }, { timeoutMs: 5_000 });
    expect(meta.pid).toBe(agent.pid);
    agent.signal("SIGINT");
    expect((await agent.exit()).code).toBe(0);
  }, 60_000);
});
