// issue 19 #5: `policy trace --dst 10.0.0.300` took the bad address for a label set and printed a verdict, exit 0.
// Something shaped like an address that does not parse is an error naming the argument, exit 2.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { cli } from "../support/run-cli.js";

const dir = mkdtempSync(join(tmpdir(), "membrane-trace-address-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("policy trace addresses", () => {
  const state = join(dir, "state.json");
  writeFileSync(state, JSON.stringify({ endpoints: [{ id: 1, labels: ["app=web"], ipv4: "10.0.0.1" }] }));

  test.each([
    ["--dst", "10.0.0.300"],
    ["--dst", "10.0.0"],
    ["--src", "fd00::1::2"],
    ["--src", "10.0.0.1.5"],
  ])("%s %s: a malformed address is an error naming the argument, exit 2, no verdict", async (flag, value) => {
    const args = flag === "--dst" ? ["--src", "app=web", "--dst", value] : ["--src", value, "--dst", "10.0.0.1"];
    const r = await cli("policy", "trace", ...args, "--dport", "80/tcp", "--config", state);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`${flag} ${value}: not a valid IP address`);
    expect(r.out).toBe("");
  });

  test("addresses and label sets still resolve: dotted label keys are labels", async () => {
    for (const [src, dst] of [["app=web", "10.0.0.1"], ["10.0.0.1", "fd00::2"], ["app=web", "io.cilium.k8s.policy"], ["k8s:app=web", "app"]]) {
      const r = await cli("policy", "trace", "--src", src!, "--dst", dst!, "--dport", "80/tcp", "--config", state);
      expect(r.err).toBe("");
      expect(r.code).toBe(0);
      expect(r.out).toMatch(/verdict: ALLOWED$/);
    }
  });
});
