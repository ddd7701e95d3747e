/** The apiserver stand-in answers 200 within its rate and 429 above it, and counts both. */
import { afterEach, expect, it } from "vitest";
import { waitFor } from "../support/wait-for.js";
import { ApiserverStandin, apiserverGet, TooManyRequestsError } from "../../host/sim/apiserver-standin.js";

let standin: ApiserverStandin | undefined;
afterEach(async () => {
  await standin?.stop();
  standin = undefined;
});

it("answers 429 to requests above its rate, 200 to those within it", async () => {
  standin = await ApiserverStandin.start({ qps: 5, burst: 5 });
  const t0 = performance.now();
  const results = await Promise.allSettled(Array.from({ length: 40 }, (_, i) => apiserverGet(standin!.url, `/api/v1/nodes/n${i}`)));
  const ok = results.filter((r) => r.status === "fulfilled").length;
  const refused = results.filter((r) => r.status === "rejected" && r.reason instanceof TooManyRequestsError).length;
  const seconds = (performance.now() - t0) / 1000;
  // the burst of 5 plus what refills while the 40 requests are answered passes, the rest is refused
  expect(ok).toBeGreaterThanOrEqual(5);
  expect(ok).toBeLessThanOrEqual(5 + Math.ceil(5 * seconds));
  expect(refused).toBeGreaterThan(0);
  expect(ok + refused).toBe(40);
  expect(standin.counts).toEqual({ requests: 40, ok, tooMany: refused });
  // 40 requests inside one 100 ms bucket read as 400 requests/s
  expect(standin.peakPerSecond()).toBeGreaterThanOrEqual(40);
});

it("answers 200 again once the rate has room", async () => {
  standin = await ApiserverStandin.start({ qps: 20, burst: 1 });
  await apiserverGet(standin.url, "/api/v1/nodes/a");
  await expect(apiserverGet(standin.url, "/api/v1/nodes/b")).rejects.toBeInstanceOf(TooManyRequestsError);
  // one token refills in 50 ms at 20 qps: asked every 25 ms, a later request passes
  await waitFor("a request within the rate again", () => apiserverGet(standin!.url, "/api/v1/nodes/c").then(() => true), { intervalMs: 25 });
  expect(standin.counts.ok).toBe(2);
  expect(standin.counts.tooMany).toBeGreaterThanOrEqual(1);
  expect(standin.counts.requests).toBe(standin.counts.ok + standin.counts.tooMany);
});
