/**
 * Files membrane writes (state file, status, snapshots, kvstore metadata) are
 * written atomically: a temporary file created exclusively (O_EXCL, so a
 * symlink planted at its name is never followed) in the same directory,
 * fsync'd, renamed over the target, and the directory fsync'd so the rename
 * itself survives a crash. Readers see the old content or the new, never a
 * mix. Files are 0600 and directories 0700 unless the caller says otherwise:
 * they hold policy, flows and addresses.
 */
import { closeSync, constants, fsyncSync, mkdirSync, openSync, renameSync, statSync, unlinkSync, writeSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { basename, dirname, join } from "node:path";
import { InvalidInputError } from "../errors.js";

export const PRIVATE_FILE_MODE = 0o600;
export const PRIVATE_DIR_MODE = 0o700;

/**
 * Makes sure `dir` exists and is a directory (created 0700 when missing).
 * A path that exists as something else is a clear error, not an EEXIST later.
 */
export function ensurePrivateDir(dir: string, what = "directory"): void {
  try {
    const st = statSync(dir);
    if (!st.isDirectory()) throw new InvalidInputError(`${what} ${dir} exists and is not a directory`);
    return;
  } catch (err) {
    if (err instanceof InvalidInputError) throw err;
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
      throw new InvalidInputError(`${what} ${dir}: ${(err as Error).message}`, { cause: err });
    }
  }
  try {
    mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  } catch (err) {
    throw new InvalidInputError(`create ${what} ${dir}: ${(err as Error).message}`, { cause: err });
  }
}

/** Writes `data` to `path` atomically (see the file comment). */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode = PRIVATE_FILE_MODE): void {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
  let fd: number | undefined;
  try {
    fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
  } catch (err) {
    throw new InvalidInputError(`write ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    let off = 0;
    while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
    fsyncSync(fd);
    // Forget the number before closing: a descriptor must be closed exactly once. Closing it
    // again after a failed rename would close whatever another thread opened under the same
    // number in between (it once closed the agent API's socket: listen failed with EBADF).
    const closing = fd;
    fd = undefined;
    closeSync(closing);
    renameSync(tmp, path);
  } catch (err) {
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        /* the write failed on a broken descriptor: nothing more to release */
      }
    }
    try {
      unlinkSync(tmp);
    } catch {
      /* never created or already renamed */
    }
    throw new InvalidInputError(`write ${path}: ${(err as Error).message}`, { cause: err });
  }
  syncDir(dir);
}

/** fsync a directory so a rename in it is durable; best effort where the filesystem refuses. */
function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    fsyncSync(fd);
  } catch {
    /* some filesystems (tmpfs on old kernels) refuse fsync on a directory: the rename is still atomic */
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
