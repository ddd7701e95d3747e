/**
 * The agent's state dir (default /run/membrane): what is in it, who owns it.
 *
 *   agent.lock        flock'd (exclusive) by the running agent for its whole life
 *   status.json       the running agent's report (status-file.ts), 0600
 *   conntrack.snap    the newest conntrack snapshot (host/forwarder/snapshot-writer.ts), 0600
 *   conntrack.snap.discarded   the snapshot set aside by --discard-snapshot
 *
 * The dir is created 0700 before anything else happens: it holds flows,
 * addresses and policy. One agent per dir: the lock is taken before the
 * agent touches a route or a device, and since the kernel drops a flock
 * with its holder, even a SIGKILLed agent never leaves a stale lock. The
 * lock is also how `membrane status` tells a running agent from a status
 * file left behind: a PID in a file can be reused, a held lock cannot lie.
 */
import { existsSync, readdirSync, renameSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { ensurePrivateDir } from "../sys/atomic-file.js";
import { lockFile, LockBusyError, type FileLock } from "../sys/file-lock.js";
import { InvalidInputError } from "../errors.js";

export const LOCK_FILE = "agent.lock";
export const STATUS_FILE = "status.json";
export const SNAPSHOT_FILE = "conntrack.snap";
export const DISCARDED_SNAPSHOT_FILE = "conntrack.snap.discarded";

export const lockPath = (dir: string): string => join(dir, LOCK_FILE);
export const snapshotPath = (dir: string): string => join(dir, SNAPSHOT_FILE);

/** Creates the state dir (0700) when missing; a path that is something else is bad input. */
export function prepareStateDir(dir: string): void {
  ensurePrivateDir(dir, "--state-dir");
}

/**
 * Takes the state dir's lock without blocking. `membrane status` holds a
 * shared lock for a moment when it looks, so a busy lock is tried again for
 * a short while before it counts as another agent's.
 */
export async function lockStateDir(dir: string, describeHolder: () => string | undefined, tries = 20): Promise<FileLock> {
  for (let attempt = 1; ; attempt++) {
    try {
      return lockFile(lockPath(dir), { wait: false, what: `state dir ${dir}` });
    } catch (err) {
      if (!(err instanceof LockBusyError)) throw err;
      if (attempt >= tries) {
        const holder = describeHolder();
        throw new InvalidInputError(
          `--state-dir ${dir} is in use by another membrane agent${holder ? ` (${holder})` : ""}: stop it first, or give this one its own --state-dir`,
        );
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/**
 * Whether a running agent holds the state dir: the lock cannot be taken
 * (shared, without waiting). No lock file: no agent ever ran there.
 */
export function stateDirHeld(dir: string): boolean {
  const path = lockPath(dir);
  if (!existsSync(path)) return false;
  try {
    lockFile(path, { shared: true, wait: false, what: `state dir ${dir}` }).release();
    return false;
  } catch (err) {
    if (err instanceof LockBusyError) return true;
    throw err;
  }
}

/**
 * Removes the temporary files of writes a killed agent never finished
 * (writeFileAtomic's ".<name>.<pid>.<random>.tmp", and the fixed ".tmp"
 * names older versions used). Only called under the lock. Returns their names.
 */
export function removeUnfinishedWrites(dir: string): string[] {
  const names = readdirSync(dir).filter((n) =>
    /^\.(status\.json|conntrack\.snap)\.\d+\.[0-9a-f]+\.tmp$/.test(n) || n === `${STATUS_FILE}.tmp` || n === `${SNAPSHOT_FILE}.tmp`);
  for (const n of names) {
    try {
      unlinkSync(join(dir, n)); // unlink never follows a symlink: one planted there just goes
    } catch {
      // gone meanwhile
    }
  }
  return names;
}

/** --discard-snapshot: sets the snapshot aside (kept for inspection); returns where, or undefined when there was none. */
export function discardSnapshot(dir: string): string | undefined {
  const from = snapshotPath(dir);
  if (!existsSync(from)) return undefined;
  const to = join(dir, DISCARDED_SNAPSHOT_FILE);
  renameSync(from, to);
  return to;
}
