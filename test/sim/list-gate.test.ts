import { describe, expect, it } from "vitest";
import { getEventListeners } from "node:events";
import { ListGate } from "../../host/sim/list-gate.js";

describe("ListGate", () => {
  it("grants turns in ticket order and removes a granted waiter's abort listener", async () => {
    const gate = new ListGate(1);
    const agent = new AbortController();
    const first = await gate.acquire(gate.ticket(), agent.signal);
    const order: number[] = [];
    const later = gate.ticket();
    const earlier = gate.ticket() - 1; // the lower ticket goes first whatever the arrival order
    const waits = [later + 1, earlier].map((t) =>
      gate.acquire(t, agent.signal).then((release) => {
        order.push(t);
        release();
      }),
    );
    expect(getEventListeners(agent.signal, "abort")).toHaveLength(2);
    first();
    await Promise.all(waits);
    expect(order).toEqual([earlier, later + 1]);
    // Many pages later the agent's signal holds no listener from turns already granted.
    for (let i = 0; i < 20; i++) {
      const hold = await gate.acquire(gate.ticket(), agent.signal);
      const queued = gate.acquire(gate.ticket(), agent.signal);
      hold();
      (await queued)();
    }
    expect(getEventListeners(agent.signal, "abort")).toHaveLength(0);
    expect(gate.running).toBe(0);
  });

  it("an aborted waiter is rejected and skipped; the next waiter gets the turn", async () => {
    const gate = new ListGate(1);
    const hold = await gate.acquire(gate.ticket());
    const quitter = new AbortController();
    const aborted = gate.acquire(gate.ticket(), quitter.signal);
    const next = gate.acquire(gate.ticket());
    quitter.abort(new Error("agent stopped"));
    await expect(aborted).rejects.toThrow("agent stopped");
    hold();
    const release = await next;
    expect(gate.running).toBe(1);
    release();
    expect(gate.running).toBe(0);
  });
});
