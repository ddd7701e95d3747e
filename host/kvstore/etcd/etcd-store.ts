/**
 * The etcd backend: etcd v3 through `etcd3` (pure JS over gRPC), using its
 * raw RPC clients rather than its higher-level helpers, for three reasons:
 *
 * - its Watcher resumes from the create response's header revision + 1, so a
 *   disconnect during a catch-up from an old revision silently skips events;
 *   our watch resumes from the last DELIVERED revision + 1 and drops any event
 *   at or below it, so nothing is lost or repeated;
 * - its watcher turns a compacted start revision into a generic error; ours
 *   raises CompactedError carrying etcd's compact_revision;
 * - its default fault policy retries non-idempotent calls (a retried CAS can
 *   report failure for a write that happened) and opens a circuit breaker for
 *   5 s; here every call runs once and failures surface as
 *   KVSTORE_UNAVAILABLE for the caller's backoff.
 *
 * Locks and leadership use the shared fenced lock (../lock.ts), not etcd3's
 * Lock/Election.
 */
import { readFileSync } from "node:fs";
import { castGrpcError, Etcd3, type IOptions, type IKeyValue, type ICompare, type IRequestOp, type IResponseOp, type IWatchResponse } from "etcd3";
import { InvalidInputError } from "../../errors.js";
import { decodeRangeResponse, type DecodedRange } from "./range-response.js";
import type { Client as GrpcClient, Metadata } from "@grpc/grpc-js";
import {
  CompactedError,
  KvStoreError,
  type Compare,
  type KeyValue,
  type KvStore,
  type Lease,
  type LeaseOptions,
  type ListOptions,
  type ListResult,
  type Lock,
  type LockOptions,
  type PutOptions,
  type Revision,
  type Txn,
  type TxnOp,
  type TxnOpResult,
  type TxnResult,
  type Watch,
  type WatchOptions,
} from "../store.js";
import type { EtcdOptions } from "../options.js";
import { WatchStream } from "../watch-stream.js";
import { TxnDerivedWrites } from "../txn-writes.js";
import { KeptLease } from "../lease-keeper.js";
import { acquireLock } from "../lock.js";
import { checkKey, checkListOptions, checkPrefix, checkRevision, checkTtl, checkTxn, checkValue } from "../validate.js";

type Policy = NonNullable<NonNullable<IOptions["faultHandling"]>["global"]>;

/** Runs each call exactly once: no retries, no circuit breaker (see the file comment). */
const passThrough = {
  execute: (fn: (ctx: { signal: AbortSignal; attempt: number }) => unknown) =>
    Promise.resolve().then(() => fn({ signal: new AbortController().signal, attempt: 1 })),
} as unknown as Policy;

export async function openEtcdKvStore(endpoints: string[], options: EtcdOptions = {}): Promise<KvStore> {
  if (endpoints.length === 0) throw new InvalidInputError("etcd kvstore: no endpoints");
  const tls = options.tls;
  const useTls = tls !== undefined && (tls.caFile !== undefined || tls.certFile !== undefined);
  let credentials: IOptions["credentials"];
  if (useTls) {
    if ((tls.certFile === undefined) !== (tls.keyFile === undefined)) {
      throw new InvalidInputError("etcd kvstore TLS: certFile and keyFile go together");
    }
    const read = (file: string | undefined, what: string): Buffer | undefined => {
      if (file === undefined) return undefined;
      try {
        return readFileSync(file);
      } catch (err) {
        throw new InvalidInputError(`etcd kvstore TLS ${what} ${file}: ${(err as Error).message}`, { cause: err });
      }
    };
    credentials = {
      rootCertificate: read(tls.caFile, "caFile") ?? Buffer.alloc(0),
      certChain: read(tls.certFile, "certFile"),
      privateKey: read(tls.keyFile, "keyFile"),
    };
  }
  if ((options.username === undefined) !== (options.password === undefined)) {
    throw new InvalidInputError("etcd kvstore: username and password go together");
  }
  const timeout = options.dialTimeoutMs ?? 5000;
  const hosts = endpoints.map((e) => (/^https?:\/\//.test(e) ? e : `${useTls ? "https" : "http"}://${e}`));
  const client = new Etcd3({
    hosts,
    credentials,
    auth: options.username !== undefined ? { username: options.username, password: options.password ?? "" } : undefined,
    dialTimeout: timeout,
    // streams (watch, keep-alive) live as long as they are needed; unary calls get a deadline
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
    faultHandling: { host: () => passThrough, global: passThrough },
    // a list of a large cluster's prefix (100,000 ipcache records) is tens of MB: grpc-js refuses replies above 4 MB by default
    grpcOptions: { "grpc.max_receive_message_length": -1 },
  });
  return new EtcdKvStore(endpoints.join(","), client, timeout);
}

/** The end of etcd's range for "every key starting with prefix" ("\0" = to the end of the keyspace). */
function prefixEnd(prefix: string): Buffer {
  const b = Buffer.from(prefix);
  for (let i = b.length - 1; i >= 0; i--) {
    if (b[i]! < 0xff) {
      const end = Buffer.from(b.subarray(0, i + 1));
      end[i]!++;
      return end;
    }
  }
  return Buffer.from([0]);
}

function rangeOf(prefix: string): { key: Buffer; range_end: Buffer } {
  return { key: prefix === "" ? Buffer.from([0]) : Buffer.from(prefix), range_end: prefixEnd(prefix) };
}

function toKeyValue(kv: IKeyValue): KeyValue {
  const lease = String(kv.lease ?? "0");
  return {
    key: kv.key.toString(),
    value: kv.value.toString(),
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
    version: Number(kv.version),
    lease: lease === "0" ? undefined : lease,
  };
}

const TARGETS = { createRevision: "Create", modRevision: "Mod", version: "Version", value: "Value", lease: "Lease" } as const;
const RESULTS = { "==": "Equal", "!=": "NotEqual", "<": "Less", ">": "Greater" } as const;

function toCompare(c: Compare): ICompare {
  const out: ICompare = { key: Buffer.from(c.key), target: TARGETS[c.target], result: RESULTS[c.op] };
  switch (c.target) {
    case "createRevision":
      out.create_revision = Number(c.value);
      break;
    case "modRevision":
      out.mod_revision = Number(c.value);
      break;
    case "version":
      out.version = Number(c.value);
      break;
    case "lease":
      out.lease = c.value === "" ? 0 : String(c.value);
      break;
    default:
      out.value = Buffer.from(String(c.value));
  }
  return out;
}

function toRequestOp(op: TxnOp): IRequestOp {
  switch (op.type) {
    case "get":
      return { request_range: { key: Buffer.from(op.key) } };
    case "list":
      return { request_range: rangeOf(op.prefix) };
    case "put":
      return { request_put: { key: Buffer.from(op.key), value: Buffer.from(op.value), lease: op.lease === undefined || op.lease === "" ? 0 : op.lease } };
    case "delete":
      return { request_delete_range: { key: Buffer.from(op.key) } };
    case "deletePrefix":
      return { request_delete_range: rangeOf(op.prefix) };
  }
}

function toOpResult(op: TxnOp, r: IResponseOp): TxnOpResult {
  switch (op.type) {
    case "get": {
      const kv = r.response_range?.kvs?.[0];
      return { type: "get", kv: kv ? toKeyValue(kv) : undefined };
    }
    case "list":
      return { type: "list", kvs: (r.response_range?.kvs ?? []).map(toKeyValue) };
    case "put":
      return { type: "put" };
    case "delete":
    case "deletePrefix":
      return { type: op.type, deleted: Number(r.response_delete_range?.deleted ?? 0) };
  }
}

/** Maps an etcd3/gRPC failure to the store's errors. */
function mapError(err: unknown, what: string, where: string): Error {
  if (err instanceof KvStoreError || err instanceof InvalidInputError) return err;
  const message = err instanceof Error ? err.message : String(err);
  if (/lease not found/i.test(message)) {
    return new KvStoreError("KVSTORE_LEASE_NOT_FOUND", `etcd ${where}: ${what}: lease not found (expired or revoked)`, { cause: err });
  }
  if (/client was already closed/i.test(message)) return new KvStoreError("KVSTORE_CLOSED", `etcd ${where}: ${what} after close`, { cause: err });
  if (/duplicate key given in txn/i.test(message)) return new KvStoreError("KVSTORE_TXN_INVALID", `etcd ${where}: ${what}: ${message}`, { cause: err });
  if (/permission denied|authentication failed|invalid auth token/i.test(message)) {
    return new KvStoreError("KVSTORE_UNAVAILABLE", `etcd ${where}: ${what}: ${message} (check username/password)`, { cause: err });
  }
  return new KvStoreError("KVSTORE_UNAVAILABLE", `etcd ${where}: ${what}: ${message}`, { cause: err });
}

/** The part of etcd3's connection pool that rangeDecoded() uses. */
interface RangeConnections {
  withConnection<R>(service: "KV", fn: (args: { client: GrpcClient; metadata: Metadata }) => Promise<R> | R): Promise<R>;
}

class EtcdKvStore extends TxnDerivedWrites implements KvStore {
  readonly backend = "etcd" as const;
  private readonly watches = new Set<EtcdWatch>();
  private readonly keptLeases = new Set<KeptLease>();
  private closed = false;
  private lastCompaction = 0;

  constructor(
    readonly location: string,
    private readonly client: Etcd3,
    private readonly timeoutMs: number,
  ) {
    super();
  }

  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw new KvStoreError("KVSTORE_CLOSED", `etcd ${this.location}: ${what} after close`);
    try {
      return await fn();
    } catch (err) {
      throw mapError(err, what, this.location);
    }
  }

  async get(key: string): Promise<KeyValue | undefined> {
    checkKey(key);
    const res = await this.call("get", () => this.client.kv.range({ key: Buffer.from(key) }));
    const kv = res.kvs[0];
    return kv ? toKeyValue(kv) : undefined;
  }

  /**
   * One range call, so the per-call deadline applies to one page, not to a
   * whole paged list. Later pages read at the first page's revision (etcd
   * serves a range at any revision not yet compacted), which keeps a paged
   * list one consistent snapshot.
   */
  async list(prefix: string, options: ListOptions = {}): Promise<ListResult> {
    checkPrefix(prefix);
    checkListOptions(prefix, options);
    const range = rangeOf(prefix);
    // the smallest key after `startAfter`: the key itself followed by a zero byte
    const key = options.startAfter === undefined ? range.key : Buffer.concat([Buffer.from(options.startAfter), Buffer.from([0])]);
    let res: DecodedRange;
    try {
      res = await this.call("list", () => this.rangeDecoded({ key, range_end: range.range_end, limit: options.limit ?? 0, revision: options.revision ?? 0 }));
    } catch (err) {
      const msg = (err as Error).message;
      if (options.revision !== undefined && /required revision has been compacted/.test(msg)) {
        // etcd's range error does not carry the compacted revision: ask for it (one round trip, only on this path)
        const compacted = await this.compactedRevision().catch(() => options.revision! + 1);
        throw new CompactedError(options.revision, compacted, `etcd list ${prefix}`);
      }
      if (options.revision !== undefined && /future revision/.test(msg)) {
        throw new InvalidInputError(`etcd ${this.location}: list ${prefix} at revision ${options.revision}: a future revision`);
      }
      throw err;
    }
    return { kvs: res.kvs, revision: options.revision ?? res.revision, more: res.more };
  }

  /**
   * A Range call on the library's own connection (its pool, auth metadata
   * and deadline), with the reply read by range-response.ts instead of the
   * library's protobufjs objects: a list's records arrive as strings and
   * numbers without a Buffer and a Long per field.
   */
  private rangeDecoded(request: { key: Buffer; range_end: Buffer; limit: number; revision: number }): Promise<DecodedRange> {
    const pool = (this.client.kv as unknown as { client: RangeConnections }).client;
    return pool.withConnection("KV", ({ client, metadata }) => {
      const range = (client as unknown as { Range?: { path?: string; requestSerialize?: (v: unknown) => Buffer } }).Range;
      if (!range?.path || !range.requestSerialize) {
        // a library whose client no longer carries its method definition: its own decoding, converted
        return this.client.kv.range(request).then((r) => ({ revision: Number(r.header.revision), kvs: r.kvs.map(toKeyValue), more: Boolean(r.more), count: Number(r.count) }));
      }
      return new Promise<DecodedRange>((resolve, reject) => {
        client.makeUnaryRequest(range.path!, range.requestSerialize!, decodeRangeResponse, request, metadata, { deadline: Date.now() + this.timeoutMs }, (err, res) => {
          if (err) reject(castGrpcError(err));
          else resolve(res!);
        });
      });
    });
  }

  async revision(): Promise<Revision> {
    const res = await this.call("revision", () => this.client.kv.range({ key: Buffer.from([0]), count_only: true }));
    return Number(res.header.revision);
  }

  async put(key: string, value: string, options: PutOptions = {}): Promise<Revision> {
    checkKey(key);
    checkValue(value, key);
    const lease = options.lease === undefined || options.lease === "" ? 0 : options.lease;
    const res = await this.call("put", () => this.client.kv.put({ key: Buffer.from(key), value: Buffer.from(value), lease }));
    return Number(res.header.revision);
  }

  async txn(txn: Txn): Promise<TxnResult> {
    checkTxn(txn);
    const res = await this.call("txn", () =>
      this.client.kv.txn({
        compare: txn.compare.map(toCompare),
        success: txn.success.map(toRequestOp),
        failure: (txn.failure ?? []).map(toRequestOp),
      }),
    );
    const ops = res.succeeded ? txn.success : (txn.failure ?? []);
    return {
      succeeded: res.succeeded,
      revision: Number(res.header.revision),
      results: ops.map((op, i) => toOpResult(op, res.responses[i] ?? ({} as IResponseOp))),
    };
  }

  // ------------------------------------------------------------ leases and locks

  async grantLease(ttlSeconds: number, options: LeaseOptions = {}): Promise<Lease> {
    const ttl = checkTtl(ttlSeconds);
    const res = await this.call("grant lease", () => this.client.leaseClient.leaseGrant({ TTL: ttl, ID: 0 }));
    const lease = new KeptLease(
      String(res.ID),
      Number(res.TTL),
      { refresh: (id) => this.refreshLease(id), revoke: (id) => this.revokeLease(id) },
      options.autoKeepAlive ?? true,
      (l) => this.keptLeases.delete(l),
    );
    this.keptLeases.add(lease);
    return lease;
  }

  /** One keep-alive round trip on a short-lived stream; TTL 0 in the answer means the lease is gone. */
  private async refreshLease(id: string): Promise<void> {
    const ttl = await this.call("keep lease alive", async () => {
      const stream = await this.client.leaseClient.leaseKeepAlive();
      try {
        return await new Promise<number>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`no keep-alive answer within ${this.timeoutMs} ms`)), this.timeoutMs);
          stream.on("data", (r) => {
            clearTimeout(timer);
            resolve(Number(r.TTL));
          });
          stream.on("error", (e) => {
            clearTimeout(timer);
            reject(e);
          });
          stream.on("end", () => {
            clearTimeout(timer);
            reject(new Error("keep-alive stream ended"));
          });
          stream.write({ ID: id });
        });
      } finally {
        stream.end();
        stream.cancel();
      }
    });
    if (ttl <= 0) throw new KvStoreError("KVSTORE_LEASE_NOT_FOUND", `etcd ${this.location}: lease ${id} not found (expired or revoked)`);
  }

  private async revokeLease(id: string): Promise<void> {
    try {
      await this.call("revoke lease", () => this.client.leaseClient.leaseRevoke({ ID: id }));
    } catch (err) {
      if (err instanceof KvStoreError && err.code === "KVSTORE_LEASE_NOT_FOUND") return; // already gone: revoke is idempotent
      throw err;
    }
  }

  async lock(name: string, lease: Lease, options?: LockOptions): Promise<Lock> {
    return acquireLock(this, name, lease, options);
  }

  // ------------------------------------------------------------ compaction

  async compact(revision: Revision): Promise<void> {
    checkRevision(revision, "compact revision");
    try {
      await this.call("compact", () => this.client.kv.compact({ revision, physical: true }));
      this.lastCompaction = Math.max(this.lastCompaction, revision);
    } catch (err) {
      const msg = (err as Error).message;
      if (/required revision has been compacted/.test(msg)) return; // already compacted at least that far
      if (/future revision/.test(msg)) throw new InvalidInputError(`etcd ${this.location}: compact revision ${revision} is in the future`);
      throw err;
    }
  }

  /**
   * etcd has no call that just returns the compacted revision; a watch
   * created at revision 1 is refused with it (or created, when nothing was
   * compacted), which costs one round trip and no data.
   */
  async compactedRevision(): Promise<Revision> {
    const probe = new EtcdWatch(this, this.client, "\0membrane-compaction-probe", 1, false);
    try {
      await probe.stream.ready; // created, or failed
      const err = probe.stream.error;
      if (err instanceof CompactedError) {
        this.lastCompaction = Math.max(this.lastCompaction, err.compactedRevision);
        return err.compactedRevision;
      }
      if (err !== undefined) throw err;
      return this.lastCompaction;
    } finally {
      await probe.stream.close();
    }
  }

  // ------------------------------------------------------------ watch

  watch(prefix: string, options: WatchOptions = {}): Watch {
    checkPrefix(prefix);
    if (this.closed) throw new KvStoreError("KVSTORE_CLOSED", `etcd ${this.location}: watch after close`);
    const from = options.fromRevision === undefined ? 0 : checkRevision(options.fromRevision, "watch fromRevision");
    const w = new EtcdWatch(this, this.client, prefix, from, options.prevKv === true);
    this.watches.add(w);
    return w.stream;
  }

  forget(w: EtcdWatch): void {
    this.watches.delete(w);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const l of [...this.keptLeases]) l.release();
    for (const w of [...this.watches]) await w.stream.close();
    this.client.close();
  }
}

/**
 * One watch on its own gRPC stream. `next` is the first revision not yet
 * delivered; every (re)connect asks etcd for history from `next`, and events
 * below `next` are dropped, so a reconnect neither loses nor repeats events.
 * With `from` 0 the first connect starts at etcd's current revision + 1 and
 * pins `next` from the create response.
 */
class EtcdWatch {
  readonly stream: WatchStream;
  private next: number;
  private closed = false;
  private cancelCurrent: (() => void) | undefined;

  constructor(
    private readonly owner: EtcdKvStore,
    private readonly client: Etcd3,
    private readonly prefix: string,
    from: number,
    /** Ask etcd for each event's previous state (prev_kv): one server-side read per event, only when the caller wants it. */
    private readonly prevKv: boolean,
  ) {
    this.next = from;
    this.stream = new WatchStream(prefix, from === 0 ? 1 : from, () => this.stop());
    void this.run();
  }

  private stop(): void {
    this.closed = true;
    this.cancelCurrent?.();
    this.owner.forget(this);
  }

  private async run(): Promise<void> {
    let backoffMs = 100;
    while (!this.closed) {
      try {
        await this.connectOnce(() => {
          backoffMs = 100;
        });
      } catch (err) {
        if (err instanceof CompactedError || (err instanceof KvStoreError && err.code === "KVSTORE_CLOSED")) {
          this.stream.fail(err);
          return;
        }
        // disconnected: resume from `next` after a jittered backoff (uniform in [b, 2b), capped at 2 s)
      }
      if (this.closed) return;
      await new Promise((r) => setTimeout(r, backoffMs + Math.random() * backoffMs));
      backoffMs = Math.min(backoffMs * 2, 2000);
    }
  }

  /** Runs one stream until it fails; resolves only when closed. */
  private async connectOnce(onCreated: () => void): Promise<void> {
    let grpc: Awaited<ReturnType<Etcd3["watchClient"]["watch"]>>;
    try {
      grpc = await this.client.watchClient.watch();
    } catch (err) {
      throw mapError(err, "watch", this.prefix);
    }
    await new Promise<void>((resolve, reject) => {
      let done = false;
      const finish = (err?: unknown): void => {
        if (done) return;
        done = true;
        this.cancelCurrent = undefined;
        try {
          grpc.cancel();
        } catch {
          /* already gone */
        }
        if (err === undefined) resolve();
        else reject(err);
      };
      this.cancelCurrent = () => finish();
      grpc.on("data", (res: IWatchResponse) => {
        if (done) return;
        if (res.canceled) {
          const compacted = Number(res.compact_revision ?? 0);
          if (compacted > 0) finish(new CompactedError(this.next, compacted, `etcd watch ${this.prefix}`));
          else finish(new KvStoreError("KVSTORE_UNAVAILABLE", `etcd watch ${this.prefix}: canceled by etcd: ${res.cancel_reason ?? ""}`));
          return;
        }
        if (res.created) {
          // a watch "from now": pin the start so a reconnect resumes here, not at a later "now"
          if (this.next === 0) this.next = Number(res.header.revision) + 1;
          onCreated();
          this.stream.setReady();
        }
        let last = 0;
        for (const ev of res.events ?? []) {
          const kv = toKeyValue(ev.kv);
          const rev = kv.modRevision;
          if (rev < this.next) continue; // delivered before a reconnect
          const isDelete = String(ev.type).toLowerCase() === "delete" || String(ev.type) === "1";
          this.stream.push({
            type: isDelete ? "delete" : "put",
            kv: isDelete ? { ...kv, value: "", createRevision: 0, version: 0, lease: undefined } : kv,
            prevKv: ev.prev_kv ? toKeyValue(ev.prev_kv) : undefined,
            revision: rev,
          });
          last = Math.max(last, rev);
        }
        // whole revisions arrive in one response (no fragmenting requested), so everything up to `last` is delivered
        if (last > 0) this.next = Math.max(this.next, last + 1);
        // progress notification of a synced watcher: nothing below header.revision is still coming
        if (!res.created && (res.events ?? []).length === 0 && this.next > 0) {
          this.next = Math.max(this.next, Number(res.header.revision) + 1);
        }
      });
      grpc.on("error", (err: Error) => finish(mapError(err, "watch", this.prefix)));
      grpc.on("end", () => finish(new KvStoreError("KVSTORE_UNAVAILABLE", `etcd watch ${this.prefix}: stream ended`)));
      const range = rangeOf(this.prefix);
      grpc.write({
        create_request: {
          key: range.key,
          range_end: range.range_end,
          start_revision: this.next,
          prev_kv: this.prevKv,
          progress_notify: true,
        },
      });
    });
  }
}
