/**
 * Errors of the kernel-object layer. Each has a stable code (MembraneError);
 * the message starts with what was being done, and the libbpf log, when
 * libbpf printed one, rides along for people who need the details.
 */
import { MembraneError } from "../errors.js";
import { errnoName } from "../sys/errno.js";

/** A bpf(2), libbpf or netlink call failed with an errno. Code "BPF_SYSCALL". */
export class BpfSyscallError extends MembraneError {
  /** Positive errno (or libbpf's own code, >= 4000). */
  readonly errno: number;
  /** Symbolic name: "ENOENT", "EPERM", "LIBBPF_ERRNO__RELOC". */
  readonly errnoName: string;
  /** What libbpf printed while the call ran (may be empty). */
  readonly log: string;
  constructor(message: string, err: number, log = "", options?: { cause?: unknown }) {
    super("BPF_SYSCALL", message, options);
    this.errno = Math.abs(err);
    this.errnoName = errnoName(err);
    this.log = log;
  }
}

/**
 * The verifier rejected a program. Code "BPF_VERIFIER". The message names the
 * program and quotes the verifier's last words; `log` is the whole verifier
 * log libbpf printed, which is what one needs to fix the C.
 */
export class BpfVerifierError extends MembraneError {
  readonly program: string;
  readonly log: string;
  constructor(message: string, program: string, log: string) {
    super("BPF_VERIFIER", message);
    this.program = program;
    this.log = log;
  }
}

/**
 * Opening or loading an object failed for a reason other than the verifier:
 * bad ELF, relocation, map creation. Code "BPF_LOAD"; `log` holds libbpf's
 * warnings, which name the failing section or map.
 */
export class BpfLoadError extends MembraneError {
  readonly errno: number;
  readonly log: string;
  constructor(message: string, err: number, log: string, options?: { cause?: unknown }) {
    super("BPF_LOAD", message, options);
    this.errno = Math.abs(err);
    this.log = log;
  }
}
