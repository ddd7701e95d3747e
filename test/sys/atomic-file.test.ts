// writeFileAtomic: the target replaced whole or not at all, and every descriptor it opens closed
// exactly once, even when the rename fails. A second close of a number already closed once would
// close whatever another thread had opened under it since: CI once lost the agent API's socket
// that way (listen: EBADF) when the held-keys path was a directory and the forwarder's worker
// thread retried its save.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

vi.mock("node:fs", async (importOriginal) => {
  const real = await importOriginal<typeof import("node:fs")>();
  return { ...real, closeSync: vi.fn(real.closeSync), openSync: vi.fn(real.openSync) };
});

const { writeFileAtomic } = await import("../../host/sys/atomic-file.js");
const { InvalidInputError } = await import("../../host/errors.js");

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "membrane-atomic-"));
  vi.mocked(fs.closeSync).mockClear();
  vi.mocked(fs.openSync).mockClear();
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/**
 * Replays the opens and closes in call order: closing a number not open (a second close) or
 * leaving one open is a fault. Numbers are reused as soon as they are closed, so order matters.
 */
function descriptorFaults(): { opens: number; faults: string[] } {
  const open = vi.mocked(fs.openSync).mock;
  const close = vi.mocked(fs.closeSync).mock;
  const events = [
    ...open.results.flatMap((r, i) => (r.type === "return" ? [{ at: open.invocationCallOrder[i]!, fd: r.value as number, opens: true }] : [])),
    ...close.calls.map(([fd], i) => ({ at: close.invocationCallOrder[i]!, fd, opens: false })),
  ].sort((x, y) => x.at - y.at);
  const held = new Set<number>();
  const faults: string[] = [];
  for (const e of events) {
    if (e.opens) held.add(e.fd);
    else if (!held.delete(e.fd)) faults.push(`fd ${e.fd} closed when not open`);
  }
  for (const fd of held) faults.push(`fd ${fd} left open`);
  return { opens: events.filter((e) => e.opens).length, faults };
}

describe("writeFileAtomic", () => {
  it("replaces the file, 0600, leaves no temporary file, and closes each descriptor once", () => {
    const path = join(dir, "state.json");
    writeFileAtomic(path, "old");
    writeFileAtomic(path, "new");
    expect(readFileSync(path, "utf8")).toBe("new");
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir)).toEqual(["state.json"]);
    const { opens, faults } = descriptorFaults();
    expect(opens).toBeGreaterThanOrEqual(2);
    expect(faults).toEqual([]);
  });

  it("a rename that fails (a directory at the path): a clear error naming the path, no temporary file, each descriptor closed once", () => {
    const path = join(dir, "esp-keys.json");
    mkdirSync(path);
    let caught: unknown;
    try {
      writeFileAtomic(path, "{}");
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(InvalidInputError);
    expect((caught as Error).message).toMatch(/^write .*esp-keys\.json: .*EISDIR/);
    expect(readdirSync(dir)).toEqual(["esp-keys.json"]);
    expect(statSync(path).isDirectory()).toBe(true);
    const { opens, faults } = descriptorFaults();
    expect(opens).toBe(1);
    expect(faults).toEqual([]);
  });
});
