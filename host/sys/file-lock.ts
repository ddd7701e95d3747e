/**
 * Advisory locks with flock(2): held by an open file description, so the
 * kernel releases them when the holder dies, even by SIGKILL. That is what
 * makes them the right tool for "one agent per state dir" and for
 * read-modify-write commands on the state file: a crashed holder never leaves
 * a stale lock behind, unlike lock files with PIDs in them.
 */
import { closeSync, constants, openSync } from "node:fs";
import { libcLibrary } from "./libc.js";
import { koffi, type NativeFunction } from "./ffi.js";
import { MembraneError } from "../errors.js";
import { PRIVATE_FILE_MODE } from "./atomic-file.js";

const LOCK_SH = 1;
const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;
const EWOULDBLOCK = 11;
const EINTR = 4;

let flockFn: NativeFunction | undefined;
function flock(fd: number, op: number): number {
  flockFn ??= libcLibrary().func("flock", "int", ["int", "int"]);
  return flockFn(fd, op) as number;
}

/** Another process holds the lock (only with `wait: false`). */
export class LockBusyError extends MembraneError {
  constructor(message: string) {
    super("LOCK_BUSY", message);
  }
}

export interface FileLock {
  readonly path: string;
  release(): void;
}

export interface LockOptions {
  /** Shared (readers) instead of exclusive. */
  shared?: boolean;
  /** false: fail at once with LockBusyError when held elsewhere. Default true: block until free. */
  wait?: boolean;
  /** What the lock protects, for messages ("state dir /run/membrane"). */
  what?: string;
}

/**
 * Takes a flock on `path` (created 0600 if missing). Blocking waits happen in
 * the kernel; callers that must stay responsive pass `wait: false` and retry.
 */
export function lockFile(path: string, options: LockOptions = {}): FileLock {
  const what = options.what ?? path;
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, PRIVATE_FILE_MODE);
  } catch (err) {
    throw new MembraneError("LOCK_FAILED", `lock ${what}: open ${path}: ${(err as Error).message}`, { cause: err });
  }
  const op = (options.shared ? LOCK_SH : LOCK_EX) | (options.wait === false ? LOCK_NB : 0);
  for (;;) {
    if (flock(fd, op) === 0) break;
    const errno = koffi().errno();
    if (errno === EINTR) continue;
    closeSync(fd);
    if (errno === EWOULDBLOCK) throw new LockBusyError(`${what} is locked by another process (${path})`);
    throw new MembraneError("LOCK_FAILED", `lock ${what}: flock ${path}: errno ${errno}`);
  }
  let held = true;
  return {
    path,
    release() {
      if (!held) return;
      held = false;
      flock(fd, LOCK_UN);
      closeSync(fd);
    },
  };
}

/** Runs `fn` under an exclusive lock on `path`, releasing it however fn ends. */
export function withFileLock<T>(path: string, fn: () => T, options: LockOptions = {}): T {
  const lock = lockFile(path, options);
  try {
    return fn();
  } finally {
    lock.release();
  }
}
