/**
 * The Lease handle both backends hand out: the backend supplies the two
 * calls (refresh, revoke); this file runs the automatic keep-alive every
 * ttl/3 with jitter (so a thousand agents started together do not refresh in
 * lock step) and reports a lost lease once.
 */
import { KvStoreError, type Lease } from "./store.js";

export interface LeaseBackend {
  refresh(id: string): Promise<void>;
  revoke(id: string): Promise<void>;
}

export class KeptLease implements Lease {
  private timer: NodeJS.Timeout | undefined;
  private readonly lostListeners: Array<(err: KvStoreError) => void> = [];
  private lost: KvStoreError | undefined;
  private stopped = false;

  constructor(
    readonly id: string,
    readonly ttl: number,
    private readonly backend: LeaseBackend,
    autoKeepAlive: boolean,
    private readonly onDone: (lease: KeptLease) => void,
  ) {
    if (autoKeepAlive) this.schedule();
  }

  private schedule(): void {
    if (this.stopped) return;
    const base = (this.ttl * 1000) / 3;
    const delay = base * (0.8 + Math.random() * 0.2);
    this.timer = setTimeout(() => void this.tick(), delay);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    try {
      await this.backend.refresh(this.id);
      this.schedule();
    } catch (err) {
      if (err instanceof KvStoreError && err.code === "KVSTORE_LEASE_NOT_FOUND") {
        this.markLost(err);
      } else if (err instanceof KvStoreError && err.code === "KVSTORE_CLOSED") {
        this.release();
      } else {
        // unreachable for now: try again sooner; the lease survives until its TTL runs out
        if (!this.stopped) {
          this.timer = setTimeout(() => void this.tick(), 250 + Math.random() * 250);
          this.timer.unref();
        }
      }
    }
  }

  private markLost(err: KvStoreError): void {
    if (this.lost) return;
    this.lost = err;
    this.release();
    for (const l of this.lostListeners) l(err);
  }

  keepAlive(): Promise<void> {
    return this.backend.refresh(this.id);
  }

  async revoke(): Promise<void> {
    this.release();
    await this.backend.revoke(this.id);
  }

  release(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.onDone(this);
  }

  onLost(listener: (err: KvStoreError) => void): void {
    if (this.lost) listener(this.lost);
    else this.lostListeners.push(listener);
  }
}
