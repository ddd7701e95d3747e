/**
 * The writes both backends derive from their txn in the same way, so the two
 * cannot drift apart in checks or results: create and compare-and-swap are
 * a put guarded by the key's mod revision (0: the key is absent) that reads
 * the current value when the guard fails; delete (optionally guarded) and
 * deletePrefix are one-op txns.
 */
import { checkRevision } from "./validate.js";
import type { Compare, ConditionalResult, DeleteResult, PutOptions, Revision, Txn, TxnResult } from "./store.js";

export abstract class TxnDerivedWrites {
  abstract txn(txn: Txn): Promise<TxnResult>;

  async create(key: string, value: string, options: PutOptions = {}): Promise<ConditionalResult> {
    return this.conditionalPut(key, 0, value, options);
  }

  async compareAndSwap(key: string, expectedModRevision: Revision, value: string, options: PutOptions = {}): Promise<ConditionalResult> {
    checkRevision(expectedModRevision, `compareAndSwap ${key} expected mod revision`);
    return this.conditionalPut(key, expectedModRevision, value, options);
  }

  private async conditionalPut(key: string, modRevision: number, value: string, options: PutOptions): Promise<ConditionalResult> {
    const r = await this.txn({
      compare: [{ key, target: "modRevision", op: "==", value: modRevision }],
      success: [{ type: "put", key, value, lease: options.lease }],
      failure: [{ type: "get", key }],
    });
    if (r.succeeded) return { succeeded: true, revision: r.revision };
    const got = r.results[0];
    return { succeeded: false, revision: r.revision, current: got?.type === "get" ? got.kv : undefined };
  }

  async delete(key: string, options: { readonly expectedModRevision?: Revision } = {}): Promise<DeleteResult> {
    const compare: Compare[] =
      options.expectedModRevision === undefined
        ? []
        : [{ key, target: "modRevision", op: "==", value: checkRevision(options.expectedModRevision, `delete ${key} expected mod revision`) }];
    const r = await this.txn({ compare, success: [{ type: "delete", key }] });
    const first = r.results[0];
    return { deleted: r.succeeded && first?.type === "delete" ? first.deleted : 0, revision: r.revision };
  }

  async deletePrefix(prefix: string): Promise<DeleteResult> {
    const r = await this.txn({ compare: [], success: [{ type: "deletePrefix", prefix }] });
    const first = r.results[0];
    return { deleted: first?.type === "deletePrefix" ? first.deleted : 0, revision: r.revision };
  }
}
