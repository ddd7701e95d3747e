/**
 * ESP anti-replay (RFC 4303 section 3.4.3, Appendix A2 without ESN): a
 * 64-packet sliding window over sequence numbers. A packet is checked before
 * its ICV is verified (cheap rejection) and the window moves only after the
 * ICV verified, so a forged packet can never advance it.
 */
export const REPLAY_WINDOW = 64;

export type ReplayCheck = "ok" | "replayed" | "too-old" | "zero";

export class ReplayWindow {
  /** Highest sequence number accepted so far (0: none yet). */
  private top = 0;
  /** Bit i set: sequence number top - i was accepted. */
  private bits = 0n;

  constructor(state?: { top: number; bits: string }) {
    if (state) {
      this.top = state.top;
      this.bits = BigInt(state.bits);
    }
  }

  /** Would `seq` be accepted? Does not change the window. */
  check(seq: number): ReplayCheck {
    if (seq === 0) return "zero"; // the first packet of an SA carries 1; 0 means the counter wrapped
    if (seq > this.top) return "ok";
    const offset = this.top - seq;
    if (offset >= REPLAY_WINDOW) return "too-old";
    return (this.bits >> BigInt(offset)) & 1n ? "replayed" : "ok";
  }

  /** Records `seq` as accepted (call only after the ICV verified and check() said ok). */
  accept(seq: number): void {
    if (seq > this.top) {
      const shift = seq - this.top;
      this.bits = shift >= REPLAY_WINDOW ? 1n : ((this.bits << BigInt(shift)) | 1n) & ((1n << BigInt(REPLAY_WINDOW)) - 1n);
      this.top = seq;
    } else {
      this.bits |= 1n << BigInt(this.top - seq);
    }
  }

  /** For snapshots: survives an agent restart like conntrack does. */
  toJSON(): { top: number; bits: string } {
    return { top: this.top, bits: this.bits.toString() };
  }
}
