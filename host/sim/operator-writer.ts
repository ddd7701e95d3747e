/**
 * The simulated operator's writes, and what became of them. Every write goes
 * through a DisciplinedKvStore (the operator's rate limit, and retries with
 * exponential backoff and jitter for a store that does not answer, as
 * Cilium's kvstore client and controllers retry); a write that still fails
 * after its last attempt is not thrown at the simulation: it is recorded here
 * (phase, operation, error) and the caller learns it as `false`, so the phase
 * goes on and the report names every failed write. A loaded machine makes an
 * etcd call miss its deadline now and then; that is a finding to report, not
 * a reason to lose a 40-minute run and its report.
 *
 * Each write is also bounded as a whole (`deadlineMs`: attempts, backoff and
 * rate-limiter waits together): the discipline's attempts are finite, but a
 * call without a deadline of its own (or a limiter queue) could still hold a
 * phase for ever. A write past the bound counts as failed ("may still land":
 * the call is not cancelled).
 */
import type { KvStore, TxnOp } from "../kvstore/store.js";
import { bounded } from "./bounded.js";

export interface OperatorWriteFailure {
  /** The simulation phase that wrote. */
  phase: string;
  /** What was written ("txn of 128 ops (put membrane/...)", "put <key>"). */
  operation: string;
  /** The last error, with the attempts the discipline made (its message says "after N attempts"). */
  error: string;
}

export interface OperatorWriteCounts {
  /** Writes (transactions or puts) that succeeded, possibly after retries. */
  succeeded: number;
  /** Retries the discipline made (each after a backoff wait). */
  retries: number;
  failures: OperatorWriteFailure[];
}

export class OperatorWriter {
  readonly counts: OperatorWriteCounts = { succeeded: 0, retries: 0, failures: [] };

  /**
   * `operatorStore` gives the operator's disciplined store (made after this
   * writer, whose noteRetry is its onRetry); `deadlineMs` bounds each write.
   */
  constructor(private readonly operatorStore: () => KvStore, private readonly deadlineMs = Infinity) {}

  /** Counts one retry of the discipline (its onRetry hook). */
  noteRetry(): void {
    this.counts.retries++;
  }

  /** One transaction; false (and recorded) when it failed after every attempt. */
  async txn(phase: string, ops: TxnOp[], store: KvStore = this.operatorStore()): Promise<boolean> {
    return (await this.txnRevision(phase, ops, store)) !== undefined;
  }

  /** One transaction; the store revision it was written at, or undefined (and recorded) when it failed. */
  async txnRevision(phase: string, ops: TxnOp[], store: KvStore = this.operatorStore()): Promise<number | undefined> {
    return (await this.attempt(phase, describeTxn(ops), () => store.txn({ compare: [], success: ops })))?.revision;
  }

  /** One put; false (and recorded) when it failed after every attempt. */
  async put(phase: string, key: string, value: string, store: KvStore = this.operatorStore()): Promise<boolean> {
    return (await this.attempt(phase, `put ${key}`, () => store.put(key, value))) !== undefined;
  }

  /** Writes `batches` with up to `inFlight` transactions at a time; returns the operations of the batches that failed. */
  async writeAll(phase: string, batches: TxnOp[][], inFlight = 8): Promise<TxnOp[]> {
    const failed: TxnOp[] = [];
    let next = 0;
    await Promise.all(Array.from({ length: Math.min(inFlight, batches.length) }, async () => {
      while (next < batches.length) {
        const b = batches[next++]!;
        if (!(await this.txn(phase, b))) failed.push(...b);
      }
    }));
    return failed;
  }

  private async attempt<T>(phase: string, operation: string, write: () => Promise<T>): Promise<T | undefined> {
    const call = write();
    try {
      const result = Number.isFinite(this.deadlineMs)
        ? await bounded(`operator ${operation} (it may still land: the call is not cancelled)`, this.deadlineMs, call)
        : await call;
      this.counts.succeeded++;
      return result;
    } catch (err) {
      call.catch(() => {}); // a write given up on may still fail later: nobody waits for it any more
      this.counts.failures.push({ phase, operation, error: err instanceof Error ? err.message : String(err) });
      return undefined;
    }
  }
}

function describeTxn(ops: readonly TxnOp[]): string {
  const first = ops[0];
  const what = first ? `${first.type} ${"key" in first ? first.key : first.prefix}` : "nothing";
  return `txn of ${ops.length} op(s) (first: ${what})`;
}
