// The agent API: a unix socket only its owner can open, JSON in and out,
// clear errors for bad requests, and "no agent" when nothing listens.
import { statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { startApiServer, type ApiServer } from "../../host/api/server.js";
import { callAgent } from "../../host/api/client.js";
import { InvalidInputError } from "../../host/errors.js";
import { createMetrics } from "../../host/metrics/registry.js";
import { testTempDir } from "../support/temp-dir.js";

describe("agent API", () => {
  let server: ApiServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it("serves routes as JSON on a 0600 unix socket and times each call", async () => {
    const dir = testTempDir("mbr-api-");
    const socket = join(dir, "agent.sock");
    const metrics = createMetrics();
    server = await startApiServer(
      socket,
      {
        "GET /v1/status": () => ({ nodes: 2, big: 5n }),
        "POST /v1/echo": (req) => ({ got: req.body, q: req.query.get("x") }),
        "POST /v1/reject": () => {
          throw new InvalidInputError("field x: bad");
        },
      },
      metrics,
    );
    expect(statSync(socket).mode & 0o777).toBe(0o600);
    expect(await callAgent(socket, "GET", "/v1/status")).toEqual({ status: 200, body: { nodes: 2, big: 5 } });
    expect(await callAgent(socket, "POST", "/v1/echo?x=1", { a: [1] })).toEqual({ status: 200, body: { got: { a: [1] }, q: "1" } });
    expect(await callAgent(socket, "POST", "/v1/reject")).toEqual({ status: 400, body: { error: "field x: bad", code: "INVALID_INPUT" } });
    const missing = await callAgent<{ code: string; endpoints: string[] }>(socket, "GET", "/v1/nothing");
    expect(missing.status).toBe(404);
    expect(missing.body.endpoints).toContain("GET /v1/status");
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/membrane_api_process_time_seconds_count\{method="GET",path="\/v1\/status",return_code="200"\} 1/);
    expect(text).toMatch(/membrane_api_process_time_seconds_count\{method="POST",path="\/v1\/reject",return_code="400"\} 1/);
  });

  it("replaces a stale socket but never another kind of file", async () => {
    const dir = testTempDir("mbr-api-");
    const socket = join(dir, "agent.sock");
    const first = await startApiServer(socket, {});
    // A killed agent leaves its socket file behind; closing the server here does not unlink it in every case, so emulate both.
    await first.close();
    server = await startApiServer(socket, { "GET /v1/ok": () => ({ ok: true }) });
    expect((await callAgent(socket, "GET", "/v1/ok")).body).toEqual({ ok: true });
    const file = join(dir, "file");
    writeFileSync(file, "x");
    await expect(startApiServer(file, {})).rejects.toThrow(/exists and is not a socket/);
  });

  it("says no agent is running when nothing listens", async () => {
    const dir = testTempDir("mbr-api-");
    await expect(callAgent(join(dir, "none.sock"), "GET", "/v1/status")).rejects.toThrow(/no agent is running/);
  });
});
