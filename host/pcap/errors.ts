/**
 * Stable, machine-matchable reasons a capture file was rejected. Callers
 * should branch on these codes, never on message text.
 */
export type CaptureErrorCode =
  /** The file ends inside a header, record or block. */
  | "CAPTURE_TRUNCATED"
  /** The file (or a pcapng section) does not start with a known magic number. */
  | "CAPTURE_BAD_MAGIC"
  /** Packets use a link-layer type the host cannot decode. */
  | "CAPTURE_UNSUPPORTED_LINKTYPE"
  /** A pcapng section has a major version other than 1. */
  | "CAPTURE_UNSUPPORTED_VERSION"
  /** Internally inconsistent structure: bad lengths, undefined interfaces, bad options. */
  | "CAPTURE_CORRUPT";

/**
 * The only error type the capture reader throws, whatever bytes it is given,
 * so callers can tell "bad file" apart from bugs with one instanceof check.
 */
export class CaptureError extends Error {
  override readonly name = "CaptureError";
  readonly code: CaptureErrorCode;
  /** Byte offset in the file of the header, record, block or option at fault. */
  readonly offset: number;
  /** 0-based packet record index, or undefined when the fault is not in a packet record. */
  readonly record: number | undefined;

  constructor(code: CaptureErrorCode, message: string, offset: number, record?: number) {
    super(message);
    this.code = code;
    this.offset = offset;
    this.record = record;
  }
}
