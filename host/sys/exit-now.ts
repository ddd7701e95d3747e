/**
 * Ends the process at once with `code` (libc _exit(2)), for a forced exit.
 *
 * process.exit() tears down every worker thread's isolate first; a worker
 * that is still starting at that moment (a TUN queue's I/O thread binding its
 * libc calls through koffi) can have koffi throw into an isolate that is going
 * away, which Node answers with "FATAL ERROR: Error::ThrowAsJavaScriptException"
 * and SIGABRT instead of the exit code (4 of 37 runs of
 * test/agent/signals.test.ts's forced exit, before this). A forced exit has already said what
 * it loses and cleaned what it could; _exit skips the teardown. What was written
 * to stdout and stderr is out: on Linux Node writes them synchronously (pipes,
 * files and terminals alike). Without libc, process.exit.
 */
import { libcLibrary } from "./libc.js";

export function exitNow(code: number): never {
  let _exit: ((code: number) => void) | undefined;
  try {
    _exit = libcLibrary().func("_exit", "void", ["int"]) as (code: number) => void;
  } catch {
    // no libc through koffi: the ordinary exit
  }
  _exit?.(code);
  process.exit(code);
}
