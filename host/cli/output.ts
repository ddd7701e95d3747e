import { writeSync } from "node:fs";

/** Where CLI output goes; tests capture it instead of the process streams. */
export interface Output {
  out(line: string): void;
  err(line: string): void;
}

/**
 * The reader of stdout went away (`membrane replay big.pcap | head`). Thrown
 * from the write itself so a long replay stops at once; the CLI ends with 0
 * and says nothing, as `cat` and `grep` do.
 */
export class OutputClosedError extends Error {
  constructor() {
    super("stdout closed by its reader");
  }
}

const pause = new Int32Array(new SharedArrayBuffer(4));

/**
 * Writes all of `text` to `fd` synchronously. Synchronous so that EPIPE comes
 * back from this call (a stream reports it a turn later, after a loop that
 * never yields has printed everything into memory); EAGAIN (a non-blocking
 * pipe whose reader is slower than us) waits a millisecond and retries.
 */
function writeAll(fd: number, text: string): void {
  let buf = Buffer.from(text);
  while (buf.length) {
    try {
      buf = buf.subarray(writeSync(fd, buf));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EPIPE") throw new OutputClosedError();
      if (code !== "EAGAIN") throw err;
      Atomics.wait(pause, 0, 0, 1);
    }
  }
}

export const processOutput: Output = {
  out: (line) => writeAll(1, line + "\n"),
  err: (line) => {
    try {
      writeAll(2, line + "\n");
    } catch (err) {
      // Nobody reads our errors either; the exit code still tells.
      if (!(err instanceof OutputClosedError)) throw err;
    }
  },
};

/** Exit codes: 0 done, 1 failed while running, 2 bad input (arguments, files). */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_BAD_INPUT = 2;
