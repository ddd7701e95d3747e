/**
 * Advisory locks with flock(2): held by an open file description, so the
 * kernel releases them when the holder dies, even by SIGKILL. That is what
 * makes them the right tool for "one agent per state dir" and for
 * read-modify-write commands on the state file: a crashed holder never leaves
 * a stale lock behind, unlike lock files with PIDs in them.
 */
import { closeSync, constants, fstatSync, openSync } from "node:fs";
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
  const fd = openLockFd(path, what);
  try {
    takeFlock(fd, path, what, options);
  } catch (err) {
    closeSync(fd);
    throw err;
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

/**
 * A lock file kept open for many exclusive sections: one open for its
 * lifetime, then two syscalls (lock, unlock) per section, cheap enough to
 * wrap every commit of a store. Waiting for another process happens in the
 * kernel and blocks this thread, so sections must stay short.
 *
 * Within one thread every SectionLock on the same path shares one open file
 * description and counts its nesting. flock(2) conflicts between *descriptions*,
 * even in one process: with one description per store, a synchronous section
 * of one store would block for ever on an async section (`exclusiveAsync`,
 * held across awaits) of another store in the same thread, since the event
 * loop that would end the async section is the one blocked. Sharing the
 * description makes the thread one holder; nested sections just count.
 */
export interface SectionLock {
  readonly path: string;
  /** Runs `fn` holding the lock exclusively, releasing it however fn ends. */
  exclusive<T>(fn: () => T): T;
  /** The same across awaits: for work that is asynchronous but must not overlap other processes' sections. */
  exclusiveAsync<T>(fn: () => Promise<T>): Promise<T>;
  close(): void;
}

interface SharedSectionFd {
  fd: number;
  users: number;
  /** Sections running now in this thread (sync ones nested in async ones). */
  depth: number;
}

/** By the lock file's device and inode, so two spellings of one path share too. */
const sectionFds = new Map<string, SharedSectionFd>();

export function openSectionLock(path: string, what: string = path): SectionLock {
  const fd = openLockFd(path, what);
  const { dev, ino } = fstatSync(fd);
  const key = `${dev}:${ino}`;
  let shared = sectionFds.get(key);
  if (shared) closeSync(fd);
  else {
    shared = { fd, users: 0, depth: 0 };
    sectionFds.set(key, shared);
  }
  shared.users++;
  const state = shared;
  let open = true;
  const enter = () => {
    if (!open) throw new MembraneError("LOCK_FAILED", `lock ${what}: used after close`);
    if (state.depth === 0) takeFlock(state.fd, path, what, {});
    state.depth++;
  };
  const leave = () => {
    if (--state.depth === 0) {
      flock(state.fd, LOCK_UN);
      if (state.users === 0) closeShared(key, state);
    }
  };
  return {
    path,
    exclusive<T>(fn: () => T): T {
      enter();
      try {
        return fn();
      } finally {
        leave();
      }
    },
    async exclusiveAsync<T>(fn: () => Promise<T>): Promise<T> {
      enter();
      try {
        return await fn();
      } finally {
        leave();
      }
    },
    close() {
      if (!open) return;
      open = false;
      // another user's section may still be running: the last one out closes the file
      if (--state.users === 0 && state.depth === 0) closeShared(key, state);
    },
  };
}

function closeShared(key: string, state: SharedSectionFd): void {
  closeSync(state.fd);
  if (sectionFds.get(key) === state) sectionFds.delete(key);
}

function openLockFd(path: string, what: string): number {
  try {
    return openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, PRIVATE_FILE_MODE);
  } catch (err) {
    throw new MembraneError("LOCK_FAILED", `lock ${what}: open ${path}: ${(err as Error).message}`, { cause: err });
  }
}

function takeFlock(fd: number, path: string, what: string, options: LockOptions): void {
  const op = (options.shared ? LOCK_SH : LOCK_EX) | (options.wait === false ? LOCK_NB : 0);
  for (;;) {
    if (flock(fd, op) === 0) return;
    const errno = koffi().errno();
    if (errno === EINTR) continue;
    if (errno === EWOULDBLOCK) throw new LockBusyError(`${what} is locked by another process (${path})`);
    throw new MembraneError("LOCK_FAILED", `lock ${what}: flock ${path}: errno ${errno}`);
  }
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
