/**
 * Errors of the host. Every error has a stable `code` for programs and a
 * message for people; causes are wrapped with a verb phrase ("load config: ...").
 */
export class MembraneError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** Bad input: a configuration, state file, policy or CLI argument. Nothing was changed. */
export class InvalidInputError extends MembraneError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("INVALID_INPUT", message, options);
  }
}

/** A kernel or runtime feature is missing; the message says which and what to do. */
export class NotSupportedError extends MembraneError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("NOT_SUPPORTED", message, options);
  }
}

/** Wraps `err` with what was being done: wrap("load program bpf_lxc", e). */
export function wrap(action: string, err: unknown): MembraneError {
  if (err instanceof MembraneError) {
    const wrapped = new MembraneError(err.code, `${action}: ${err.message}`, { cause: err });
    return wrapped;
  }
  const message = err instanceof Error ? err.message : String(err);
  return new MembraneError("INTERNAL", `${action}: ${message}`, { cause: err });
}
