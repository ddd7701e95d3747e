/**
 * The state file (`--config`) on disk: read once and validated whole
 * (host/state/schema.ts) for every reader; changed only by read-modify-write
 * under an advisory lock on `<file>.lock`, so concurrent commands never lose
 * each other's writes. The changed file is validated exactly as a load
 * validates it before it is written, and written atomically (0600; a
 * missing directory is created 0700): a command that writes the state file
 * leaves it loadable, or leaves it as it was. Readers take no lock: a write
 * is a rename, so a reader sees the old file or the new one, never a mix.
 */
import { dirname } from "node:path";
import type { ResolvedOptions } from "../config.js";
import { ensurePrivateDir, writeFileAtomic } from "../sys/atomic-file.js";
import { withFileLock } from "../sys/file-lock.js";
import { readStateObject } from "./read.js";
import { validateState, type MembraneState } from "./schema.js";

/** The state file read and validated completely. */
export function loadState(path: string): MembraneState {
  return validateState(readStateObject(path), path);
}

/** The datapath options of a state file (the whole file validated). */
export function loadStateFile(path: string): ResolvedOptions {
  return loadState(path).options;
}

/** The lock file beside the state file; never removed (removing it would let two writers hold "the" lock at once). */
export function stateLockPath(path: string): string {
  return `${path}.lock`;
}

export interface StateUpdate<T> {
  /** The whole file as it is to be written. */
  next: Record<string, unknown>;
  /** What the caller wants back (a summary of the change). */
  result: T;
}

/**
 * Read-modify-write of the state file under its lock. `change` gets the
 * current state (validated; an empty one when the file does not exist and
 * `mayBeMissing`) and returns the file to write. That is validated as a load
 * would validate it, then written atomically; on any error nothing is written.
 */
export function updateState<T>(path: string, change: (state: MembraneState) => StateUpdate<T>, opts: { mayBeMissing?: boolean } = {}): T {
  ensurePrivateDir(dirname(path), "state file directory");
  return withFileLock(stateLockPath(path), () => {
    const current = validateState(readStateObject(path, opts.mayBeMissing ?? false), path);
    const { next, result } = change(current);
    validateState(next, path);
    writeFileAtomic(path, JSON.stringify(next, null, 2) + "\n");
    return result;
  }, { what: `state file ${path}` });
}
