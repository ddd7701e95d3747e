/**
 * When a streaming command (`monitor`, `capture`) stops: Ctrl-C, after
 * `--seconds`, or when the command itself decides (`--count` reached). One
 * AbortSignal for all three; dispose() when the stream is over.
 */
import { InvalidInputError } from "../errors.js";

export interface StreamStop {
  readonly signal: AbortSignal;
  stop(): void;
  dispose(): void;
}

export function streamStop(secondsText: string | undefined): StreamStop {
  const seconds = secondsText === undefined ? undefined : Number(secondsText);
  if (seconds !== undefined && !(seconds > 0)) throw new InvalidInputError(`--seconds: expected a positive number, got "${secondsText}"`);
  const controller = new AbortController();
  const stop = () => controller.abort();
  const timer = seconds === undefined ? undefined : setTimeout(stop, seconds * 1000);
  process.once("SIGINT", stop);
  return {
    signal: controller.signal,
    stop,
    dispose: () => {
      if (timer) clearTimeout(timer);
      process.off("SIGINT", stop);
    },
  };
}
