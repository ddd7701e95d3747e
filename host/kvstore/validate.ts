/**
 * Input checks shared by both backends, so bad keys and TTLs fail the same
 * way (InvalidInputError naming the argument) before anything is written.
 */
import { InvalidInputError } from "../errors.js";
import { KvStoreError, type ListOptions, type Txn, type TxnOp } from "./store.js";

/** LMDB keys are limited (lmdb-js: 1978 bytes); etcd allows far more. One limit for both backends. */
export const MAX_KEY_BYTES = 1024;

/** Control characters are refused in keys: the embedded index encodes compound keys with them, and keys are printable paths anyway. */
const CONTROL = /[\u0000-\u001f\u007f]/;

export function checkKey(key: unknown, what = "key"): string {
  if (typeof key !== "string" || key === "") throw new InvalidInputError(`kvstore ${what}: must be a non-empty string`);
  return checkKeyText(key, what);
}

export function checkPrefix(prefix: unknown, what = "prefix"): string {
  if (typeof prefix !== "string") throw new InvalidInputError(`kvstore ${what}: must be a string`);
  return checkKeyText(prefix, what);
}

function checkKeyText(key: string, what: string): string {
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) throw new InvalidInputError(`kvstore ${what} "${key.slice(0, 40)}...": longer than ${MAX_KEY_BYTES} bytes`);
  if (CONTROL.test(key)) throw new InvalidInputError(`kvstore ${what} ${JSON.stringify(key)}: control characters are not allowed in keys`);
  return key;
}

/** A list's options: a page size >= 1, a start key inside the prefix, a revision >= 1. */
export function checkListOptions(prefix: string, options: ListOptions): ListOptions {
  const { limit, startAfter, revision } = options;
  if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 1)) {
    throw new InvalidInputError(`kvstore list ${prefix}: limit must be a whole number >= 1, got ${String(limit)}`);
  }
  if (startAfter !== undefined) {
    checkKey(startAfter, "list startAfter");
    if (!startAfter.startsWith(prefix)) throw new InvalidInputError(`kvstore list ${prefix}: startAfter ${JSON.stringify(startAfter)} does not start with the prefix`);
  }
  if (revision !== undefined && (checkRevision(revision, "list revision") < 1)) {
    throw new InvalidInputError(`kvstore list ${prefix}: revision must be >= 1, got ${revision}`);
  }
  return options;
}

export function checkValue(value: unknown, key: string): string {
  if (typeof value !== "string") throw new InvalidInputError(`kvstore value of ${key}: must be a string`);
  return value;
}

export function checkTtl(ttl: unknown): number {
  if (typeof ttl !== "number" || !Number.isInteger(ttl) || ttl < 1 || ttl > 9_000_000_000) {
    throw new InvalidInputError(`kvstore lease ttl: must be a whole number of seconds >= 1 (got ${String(ttl)})`);
  }
  return ttl;
}

export function checkRevision(rev: unknown, what: string): number {
  if (typeof rev !== "number" || !Number.isSafeInteger(rev) || rev < 0) {
    throw new InvalidInputError(`kvstore ${what}: must be a revision (whole number >= 0), got ${String(rev)}`);
  }
  return rev;
}

/** Validates a txn's shape; a key written twice in one branch is refused (as etcd does). */
export function checkTxn(txn: Txn): void {
  if (txn === null || typeof txn !== "object" || !Array.isArray(txn.compare) || !Array.isArray(txn.success)) {
    throw new InvalidInputError("kvstore txn: needs compare[] and success[]");
  }
  for (const c of txn.compare) {
    checkKey(c.key, "txn compare key");
    if (!["createRevision", "modRevision", "version", "value", "lease"].includes(c.target)) {
      throw new InvalidInputError(`kvstore txn compare on ${c.key}: unknown target ${String(c.target)}`);
    }
    if (!["==", "!=", "<", ">"].includes(c.op)) throw new InvalidInputError(`kvstore txn compare on ${c.key}: unknown op ${String(c.op)}`);
  }
  checkBranch(txn.success, "success");
  if (txn.failure !== undefined) checkBranch(txn.failure, "failure");
}

function checkBranch(ops: readonly TxnOp[], branch: string): void {
  const written = new Set<string>();
  const prefixes: string[] = [];
  for (const op of ops) {
    switch (op.type) {
      case "get":
        checkKey(op.key, `txn ${branch} get key`);
        break;
      case "list":
        checkPrefix(op.prefix, `txn ${branch} list prefix`);
        break;
      case "put":
      case "delete": {
        checkKey(op.key, `txn ${branch} ${op.type} key`);
        if (op.type === "put") checkValue(op.value, op.key);
        if (written.has(op.key) || prefixes.some((p) => op.key.startsWith(p))) {
          throw new KvStoreError("KVSTORE_TXN_INVALID", `kvstore txn ${branch}: key ${op.key} is written twice`);
        }
        written.add(op.key);
        break;
      }
      case "deletePrefix": {
        checkPrefix(op.prefix, `txn ${branch} deletePrefix prefix`);
        if (op.prefix === "") throw new InvalidInputError(`kvstore txn ${branch}: deletePrefix of "" (everything) is refused`);
        if ([...written].some((k) => k.startsWith(op.prefix)) || prefixes.some((p) => p.startsWith(op.prefix) || op.prefix.startsWith(p))) {
          throw new KvStoreError("KVSTORE_TXN_INVALID", `kvstore txn ${branch}: prefix ${op.prefix} overlaps another write`);
        }
        prefixes.push(op.prefix);
        break;
      }
      default:
        throw new InvalidInputError(`kvstore txn ${branch}: unknown op type ${String((op as { type: unknown }).type)}`);
    }
  }
}

/** Evaluates one comparison against a key's state (absent: zeros, no value). Shared by the embedded backend and tests. */
export function compareHolds(
  actual: { createRevision: number; modRevision: number; version: number; value: string | undefined; lease: string | undefined },
  target: string,
  op: string,
  expected: number | string,
): boolean {
  let a: number | string;
  switch (target) {
    case "createRevision":
      a = actual.createRevision;
      break;
    case "modRevision":
      a = actual.modRevision;
      break;
    case "version":
      a = actual.version;
      break;
    case "lease":
      a = actual.lease ?? "0";
      if (expected === "" || expected === 0) expected = "0";
      expected = String(expected);
      break;
    default:
      // etcd: comparing the value of an absent key is false whatever the op
      if (actual.value === undefined) return false;
      a = actual.value;
      expected = String(expected);
  }
  switch (op) {
    case "==":
      return a === expected;
    case "!=":
      return a !== expected;
    case "<":
      return a < expected;
    default:
      return a > expected;
  }
}
