// host/sys/file-lock.ts openSectionLock: what the embedded kvstore relies on. Another process
// (util-linux flock(1), non-blocking) must see the lock held for exactly as long as any section of
// this thread runs; sections of two stores on one file in one thread must share the hold instead of
// blocking each other (one blocking flock(2) in the event loop's thread would never return).
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { openSectionLock } from "../../host/sys/file-lock.js";
import { MembraneError } from "../../host/errors.js";
import { pause } from "../support/wait-for.js";

const dir = mkdtempSync(join(tmpdir(), "membrane-section-lock-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Can another process take the lock right now? (flock -n exits 1 when it is held.) */
function freeForOthers(path: string): boolean {
  const r = spawnSync("flock", ["-n", path, "true"]);
  if (r.error) throw r.error;
  return r.status === 0;
}

describe("section lock", () => {
  it("is held for others exactly while a section runs, sync or across awaits", async () => {
    const path = join(dir, "a.lock");
    const lock = openSectionLock(path);
    try {
      expect(freeForOthers(path)).toBe(true);
      expect(lock.exclusive(() => freeForOthers(path))).toBe(false);
      expect(freeForOthers(path)).toBe(true);
      const during = await lock.exclusiveAsync(async () => {
        await pause(20);
        return freeForOthers(path);
      });
      expect(during).toBe(false);
      expect(freeForOthers(path)).toBe(true);
      // a throwing section releases too
      expect(() => lock.exclusive(() => {
        throw new Error("inside");
      })).toThrow("inside");
      expect(freeForOthers(path)).toBe(true);
    } finally {
      lock.close();
    }
  });

  it("two locks on one file in one thread share the hold: a sync section inside the other's async section neither blocks nor releases it", async () => {
    mkdirSync(join(dir, "sub"), { recursive: true });
    const path = join(dir, "sub", "b.lock");
    const a = openSectionLock(path);
    const b = openSectionLock(join(dir, "sub", ".", "b.lock")); // another spelling of the same file
    try {
      const seen = await a.exclusiveAsync(async () => {
        await pause(5);
        const insideB = b.exclusive(() => freeForOthers(path));
        const afterB = freeForOthers(path);
        return { insideB, afterB };
      });
      expect(seen).toEqual({ insideB: false, afterB: false });
      expect(freeForOthers(path)).toBe(true);
      // closing one leaves the other working
      a.close();
      expect(b.exclusive(() => freeForOthers(path))).toBe(false);
      expect(freeForOthers(path)).toBe(true);
    } finally {
      a.close();
      b.close();
    }
  });

  it("refuses a section after close with a named error", () => {
    const lock = openSectionLock(join(dir, "c.lock"), "test store");
    lock.close();
    expect(() => lock.exclusive(() => 1)).toThrow(MembraneError);
    expect(() => lock.exclusive(() => 1)).toThrow(/test store: used after close/);
  });
});
