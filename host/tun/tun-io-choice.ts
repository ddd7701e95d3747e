/**
 * How a TUN device moves its packets between the kernel and JavaScript
 * (OpenTunOptions.io, `membrane agent --tun-io`, `--no-native-io`):
 *
 * - "uring": native/tun_io.c, a batch per io_uring_enter(2) (one FFI call
 *   and one syscall per batch);
 * - "batch": native/tun_io.c, read(2)/write(2) looped in C (one FFI call per
 *   batch, one syscall per packet);
 * - "koffi": one koffi call of read(2)/write(2) per packet, the fallback
 *   when the native library is not built;
 * - "adaptive": uring or batch, whichever costs the thread less CPU per
 *   packet under the traffic it moves, measured again every few seconds
 *   (io-mode-tuner.ts says why no fixed choice is right);
 * - "auto" (the default): adaptive when the machine gives io_uring, else
 *   batch, else koffi.
 *
 * Every mode moves the same bytes (test/tun/native-io.test.ts).
 */
import { NotSupportedError, InvalidInputError } from "../errors.js";
import { tunNative, tunNativeUnavailable } from "../sys/tun-native.js";

export type TunIoMode = "uring" | "batch" | "adaptive" | "koffi";
export type TunIoChoice = "auto" | TunIoMode;

export const TUN_IO_CHOICES: readonly TunIoChoice[] = ["auto", "adaptive", "uring", "batch", "koffi"];

let uringProbe: string | null | undefined;

/** Why this process cannot make an io_uring (undefined: it can); tried once. */
function uringUnavailable(): string | undefined {
  if (uringProbe === undefined) {
    const lib = tunNative()!;
    const err = new Int32Array(1);
    const ring = lib.uringNew(8, err);
    if (ring === 0) {
      uringProbe = `io_uring_setup refused (errno ${err[0]}${err[0] === 1 ? ": EPERM, kernel.io_uring_disabled or seccomp" : err[0] === 38 ? ": ENOSYS, the kernel has no io_uring" : ""})`;
    } else {
      lib.uringFree(ring);
      uringProbe = null;
    }
  }
  return uringProbe ?? undefined;
}

/**
 * The mode a device opened with `choice` uses, and a note for people when
 * "auto" had to settle for less. An explicit native mode the machine cannot
 * give is an error that says why.
 */
export function resolveTunIo(choice: TunIoChoice = "auto"): { mode: TunIoMode; note?: string } {
  if (!TUN_IO_CHOICES.includes(choice)) {
    throw new InvalidInputError(`TUN io must be one of ${TUN_IO_CHOICES.join(", ")}, got ${JSON.stringify(choice)}`);
  }
  if (choice === "koffi") return { mode: "koffi" };
  if (!tunNative()) {
    if (choice !== "auto") throw new NotSupportedError(`TUN io "${choice}" needs the native library: ${tunNativeUnavailable()}`);
    return { mode: "koffi", note: `TUN I/O one packet per FFI call: ${tunNativeUnavailable()}` };
  }
  if (choice === "batch") return { mode: "batch" };
  const why = uringUnavailable();
  if (why === undefined) return { mode: choice === "uring" ? "uring" : "adaptive" };
  if (choice === "uring" || choice === "adaptive") throw new NotSupportedError(`TUN io "${choice}": ${why}`);
  return { mode: "batch", note: `TUN I/O batched read(2)/write(2), not io_uring: ${why}` };
}
