// The agent owns the routing it needs (issue 19, failure 15): with policy routing (a rule sending traffic
// to a table whose route leads into the device), the table's route and the rule are set up at every start,
// the flows take that path, and the rule is removed at stop (the route goes with the device). A rule left by
// a SIGKILLed agent is taken over at the next start, not added twice.
import { expect, test } from "vitest";
import { describeIf } from "../support/describe-if.js";
import { AgentLab, labForSuite, agentUnavailable, FLOW_PREFIX } from "./agent-lab.js";
import { waitFor } from "../support/wait-for.js";
import { readStatus } from "../../host/agent/status-file.js";

const TABLE = "100";
const RULE = "from 10.76.0.0/24 pref 100";
const ARGS = ["--route", FLOW_PREFIX, "--route-table", TABLE, "--route-rule", RULE];

describeIf("the agent's routing (issue 19, failure 15)", agentUnavailable(), () => {
  let lab!: AgentLab;
  labForSuite("route", 200, (l) => (lab = l));

  const rules = () => lab.ip("-4", "rule", "show", "pref", "100").trim().split("\n").filter(Boolean);
  const tableRoutes = () => lab.ip("route", "show", "table", TABLE).trim();

  test("the table's route and the rule are restored at every start, carry the flows, and the rule goes at stop", async () => {
    for (let round = 0; round < 2; round++) {
      const agent = lab.agent(ARGS);
      const line = await agent.forwarding();
      expect(line).toContain(`routes ${FLOW_PREFIX} in table ${TABLE}, rules "${RULE}" -> table ${TABLE}`);
      // Nothing here needs them off, so the device has offloads (host/cli/agent.ts offloadsFromFlags).
      expect(line).toContain("(mtu 1500, offloads on (default)");
      expect(tableRoutes()).toContain(`${FLOW_PREFIX} dev mbrt0`);
      expect(rules()).toEqual(["100:\tfrom 10.76.0.0/24 lookup 100"]);
      // Only the rule routes the flows' prefix: the main table has no route for it.
      expect(lab.ip("route", "show", FLOW_PREFIX).trim()).toBe("");
      await waitFor("flows through the rule's table into the device", () => (readStatus(lab.stateDir)?.entries ?? 0) > 0, { timeoutMs: 10_000 });
      agent.signal("SIGINT");
      expect((await agent.exit()).code).toBe(0);
      expect(rules()).toEqual([]);
      expect(tableRoutes()).toBe("");
    }
  });

  test("a rule left by a SIGKILLed agent is taken over at the next start (one copy) and removed at its stop", async () => {
    const killed = lab.agent(ARGS);
    await killed.forwarding();
    killed.signal("SIGKILL");
    await killed.exit();
    expect(rules()).toHaveLength(1); // rules outlive the agent; its table's route went with the device
    expect(tableRoutes()).toBe("");

    const next = lab.agent(ARGS);
    await next.forwarding();
    expect(rules()).toHaveLength(1);
    expect(tableRoutes()).toContain(`${FLOW_PREFIX} dev mbrt0`);
    next.signal("SIGINT");
    expect((await next.exit()).code).toBe(0);
    expect(rules()).toEqual([]);
  });

  test("a rule without a table, a reserved table and an action in the selector are refused before anything starts", async () => {
    for (const [args, message] of [
      [["--route-rule", RULE], "--route-rule needs --route-table"],
      [["--route-table", "254", "--route-rule", RULE], `--route-table: table 254 is the kernel's "main" table`],
      [["--route-table", TABLE, "--route-rule", "iif lo lookup 7"], `"lookup" is not a rule selector`],
      [["--route-table", TABLE, "--route-rule", "from 10.0.0.0/8 to fd00::/8"], "mixes IPv4 and IPv6 addresses"],
    ] as const) {
      const agent = lab.agent([...args]);
      expect((await agent.exit()).code).toBe(2);
      expect(agent.err).toContain(message);
      expect(lab.deviceExists()).toBe(false);
      expect(rules()).toEqual([]);
    }
  });
});
