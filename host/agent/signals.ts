/**
 * How the agent answers SIGINT and SIGTERM, from the moment it starts:
 * - the first starts a clean shutdown (conntrack saved, routes and rules
 *   removed, status file removed, state dir unlocked);
 * - the second is reported and ignored: an impatient Ctrl-C must not lose
 *   the conntrack snapshot or leave a stale status file behind;
 * - the third forces an exit, after saying what is lost.
 * Handlers stay installed until dispose(): with none, Node's default for a
 * signal is to die on the spot, which is the failure this replaces.
 */
import type { Output } from "../format/output.js";

export type ShutdownSignal = "SIGINT" | "SIGTERM";
const SIGNALS: readonly ShutdownSignal[] = ["SIGINT", "SIGTERM"];
const SIGNAL_NUMBERS: Record<ShutdownSignal, number> = { SIGINT: 2, SIGTERM: 15 };

/** What the process listens on (process itself; tests may pass an EventEmitter). */
export interface SignalSource {
  on(event: ShutdownSignal, listener: (signal: ShutdownSignal) => void): unknown;
  off(event: ShutdownSignal, listener: (signal: ShutdownSignal) => void): unknown;
}

export interface ShutdownHooks {
  /** What a forced exit now loses ("conntrack changes since the snapshot of 3 s ago"). */
  lost(): string;
  /** Cleans up what can be cleaned synchronously, then exits (128 + the signal's number). */
  force(signal: ShutdownSignal, exitCode: number): void;
}

export class ShutdownSignals {
  /** Resolves with the first signal. */
  readonly requested: Promise<ShutdownSignal>;
  #count = 0;
  #first: ShutdownSignal | undefined;
  #resolve!: (s: ShutdownSignal) => void;
  readonly #listener = (signal: ShutdownSignal) => this.#receive(signal);

  constructor(private readonly io: Output, private readonly hooks: ShutdownHooks, private readonly source: SignalSource = process) {
    this.requested = new Promise((resolve) => (this.#resolve = resolve));
    for (const s of SIGNALS) source.on(s, this.#listener);
  }

  /** The first signal received, if any. */
  get received(): ShutdownSignal | undefined {
    return this.#first;
  }

  dispose(): void {
    for (const s of SIGNALS) this.source.off(s, this.#listener);
  }

  #receive(signal: ShutdownSignal): void {
    this.#count++;
    if (this.#count === 1) {
      this.#first = signal;
      this.io.out(`membrane agent: ${signal}: stopping (saving conntrack, removing routes)`);
      this.#resolve(signal);
    } else if (this.#count === 2) {
      this.io.err(`membrane agent: ${signal} again: still stopping, ignored; one more forces an exit and loses ${this.hooks.lost()}`);
    } else {
      this.io.err(`membrane agent: ${signal}: forced exit: ${this.hooks.lost()} lost`);
      this.hooks.force(signal, 128 + SIGNAL_NUMBERS[signal]);
    }
  }
}

/**
 * Resolves at the first shutdown signal or after `seconds` (when given),
 * holding the event loop open meanwhile: nothing else may keep an agent alive.
 */
export function untilStopRequested(signals: Pick<ShutdownSignals, "requested">, seconds?: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const keepAlive = setInterval(() => {}, 1 << 30);
    const timer = seconds !== undefined ? setTimeout(() => done(), seconds * 1000) : undefined;
    const done = () => {
      clearInterval(keepAlive);
      if (timer) clearTimeout(timer);
      resolve();
    };
    void signals.requested.then(done);
  });
}
