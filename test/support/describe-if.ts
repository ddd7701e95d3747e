/**
 * The one rule for suites that need something from the machine (root, BPF,
 * clang, TUN, iproute2): outside CI they skip and print why; in CI (CI=true)
 * they register one failing test carrying the reason, because a missing
 * install step must not pass as green.
 */
import { describe, it, test, type TestFunction } from "vitest";

export function describeIf(name: string, missing: string | undefined, body: () => void): void {
  if (missing === undefined) {
    describe(name, body);
  } else if (process.env.CI === "true") {
    describe(name, () => {
      it("has what the suite needs", () => {
        throw new Error(`${name} cannot run: ${missing}`);
      });
    });
  } else {
    console.warn(`skipping ${name}: ${missing}`);
    describe.skip(name, body);
  }
}

/** The same rule for one test inside a suite that otherwise runs anywhere. */
export function testIf(name: string, missing: string | undefined, fn: TestFunction, timeout?: number): void {
  if (missing === undefined) {
    test(name, fn, timeout);
  } else if (process.env.CI === "true") {
    test(name, () => {
      throw new Error(`${name} cannot run: ${missing}`);
    });
  } else {
    console.warn(`skipping ${name}: ${missing}`);
    test.skip(name, fn, timeout);
  }
}
