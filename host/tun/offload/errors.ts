/**
 * The one error of the offload layer. Everything it rejects (a virtio_net_hdr
 * that contradicts its packet, a batch without room for what it must write)
 * is input the layer cannot act on without guessing, so a single stable code
 * lets the forwarder count and drop such packets without string matching.
 */
import { MembraneError } from "../../errors.js";

/** Code "OFFLOAD_INVALID". The message names the field and the numbers that disagree. */
export class OffloadError extends MembraneError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("OFFLOAD_INVALID", message, options);
  }
}
