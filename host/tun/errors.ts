/**
 * Errors of the TUN layer. A failed read or write in the middle of a batch
 * says how many packets were done before it (`done`), because those were
 * really read (their bytes and sizes are in place) or really sent, and the
 * caller must not lose or repeat them.
 */
import { errnoName } from "../sys/errno.js";
import { MembraneError } from "../errors.js";

/** read(2), write(2), poll(2) or an ioctl on a TUN fd failed. Code "TUN_IO". */
export class TunIoError extends MembraneError {
  /** Positive errno. */
  readonly errno: number;
  /** Symbolic errno name ("EINVAL"). */
  readonly errnoName: string;
  /** Packets of the batch completed before the failure (0 outside batches). */
  readonly done: number;
  constructor(message: string, errno: number, done = 0, options?: { cause?: unknown }) {
    super("TUN_IO", `${message} (${errnoName(errno)})`, options);
    this.errno = Math.abs(errno);
    this.errnoName = errnoName(errno);
    this.done = done;
  }
}

/** Use after close(). Code "TUN_CLOSED". */
export class TunClosedError extends MembraneError {
  constructor(name: string) {
    super("TUN_CLOSED", `TUN device ${name} is closed`);
  }
}
