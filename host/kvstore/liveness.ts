/**
 * Is the kvstore connection alive? Judged from the age of the last event
 * received (a watch event, a keep-alive answer, any reply), not from extra
 * pings: at 5,000 agents a ping per agent per second is 5,000 more requests a
 * second on etcd for no information that events do not already carry.
 */
import { systemClock, type Clock } from "./clock.js";

export type LivenessState = "alive" | "stale" | "unknown";

export class Liveness {
  private last: number | undefined;

  /** `staleAfterMs`: with no event for this long the connection counts as stale. */
  constructor(private readonly staleAfterMs: number, private readonly clock: Clock = systemClock) {}

  /** Call on every event received from the kvstore. */
  observe(): void {
    this.last = this.clock.now();
  }

  /** Milliseconds since the last event; undefined before the first. */
  age(): number | undefined {
    return this.last === undefined ? undefined : this.clock.now() - this.last;
  }

  state(): LivenessState {
    const age = this.age();
    if (age === undefined) return "unknown";
    return age <= this.staleAfterMs ? "alive" : "stale";
  }
}
