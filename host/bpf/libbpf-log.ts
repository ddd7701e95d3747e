/**
 * Where libbpf's log goes. libbpf prints warnings (and, when a program is
 * rejected, the whole verifier log) through one process-wide print callback.
 * Printing them on stderr would interleave with our own output and lose them
 * for error reporting, so the callback (installed in libbpf.ts) hands each
 * message here, and whoever is running a libbpf call captures what it printed
 * and puts it into the error it throws.
 *
 * Outside a capture, messages are dropped unless MEMBRANE_LIBBPF_LOG is set
 * ("1": warnings and info on stderr; "debug": everything).
 */

export type LibbpfLevel = "warn" | "info" | "debug";

/** enum libbpf_print_level order (libbpf.h). */
export const LIBBPF_LEVELS: readonly LibbpfLevel[] = ["warn", "info", "debug"];

export interface LibbpfMessage {
  level: LibbpfLevel;
  /** One printf result; libbpf messages end in "\n" and may span many lines. */
  text: string;
}

/** The messages libbpf printed during one capture. */
export class LibbpfLog {
  readonly messages: LibbpfMessage[] = [];

  /** Messages at `minLevel` or more severe, concatenated. */
  text(minLevel: LibbpfLevel = "info"): string {
    const max = LIBBPF_LEVELS.indexOf(minLevel);
    return this.messages
      .filter((m) => LIBBPF_LEVELS.indexOf(m.level) <= max)
      .map((m) => m.text)
      .join("");
  }
}

const active: LibbpfLog[] = [];

/** Runs `fn`, collecting every message libbpf prints meanwhile into `log`. */
export function captureLibbpfLog<T>(fn: (log: LibbpfLog) => T): T {
  const log = new LibbpfLog();
  active.push(log);
  try {
    return fn(log);
  } finally {
    active.splice(active.lastIndexOf(log), 1);
  }
}

function envMode(): "off" | "on" | "debug" {
  const v = process.env.MEMBRANE_LIBBPF_LOG;
  if (!v || v === "0") return "off";
  return v === "debug" ? "debug" : "on";
}

/**
 * Whether a message at `level` has anyone to go to. Debug messages are many
 * and formatting each one costs a trip into JS, so they are skipped unless
 * asked for.
 */
export function libbpfLevelWanted(level: LibbpfLevel): boolean {
  if (level !== "debug") return true;
  return envMode() === "debug";
}

/** Called by the print callback with each formatted message. */
export function emitLibbpfMessage(level: LibbpfLevel, text: string): void {
  if (active.length > 0) {
    for (const log of active) log.messages.push({ level, text });
    return;
  }
  const mode = envMode();
  if (mode === "off") return;
  if (level === "debug" && mode !== "debug") return;
  process.stderr.write(text.endsWith("\n") ? text : `${text}\n`);
}
