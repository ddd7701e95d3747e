/**
 * Records <-> kvstore values. A key says what its value is (kind, version,
 * and for identities master vs per-node key); decoding refuses an unknown
 * version, a value that is not JSON, and a record that fails its validator,
 * each naming the key and field.
 */
import { InvalidInputError } from "../../errors.js";
import { parseStateKey, type RecordKind, type StateKey } from "../keys.js";
import type { Mode } from "./fields.js";
import { readEndpoint, type EndpointRecord } from "./endpoint.js";
import { readIdentityMaster, readIdentityValue, type IdentityMasterRecord, type IdentityValueRecord } from "./identity.js";
import { readIpcache, type IpcacheRecord } from "./ipcache.js";
import { readNode, type NodeRecord } from "./node.js";
import { readPolicy, type PolicyRecord } from "./policy.js";
import { readPod, type PodRecord } from "./pod.js";
import { readService, type ServiceRecord } from "./service.js";

export type RecordType = "node" | "identity-master" | "identity-value" | "ipcache" | "service" | "endpoint" | "policy" | "pod";

export interface RecordTypes {
  node: NodeRecord;
  "identity-master": IdentityMasterRecord;
  "identity-value": IdentityValueRecord;
  ipcache: IpcacheRecord;
  service: ServiceRecord;
  endpoint: EndpointRecord;
  policy: PolicyRecord;
  pod: PodRecord;
}

export type AnyRecord = RecordTypes[RecordType];

const READERS: { [T in RecordType]: (v: unknown, path: string, mode: Mode) => RecordTypes[T] } = {
  node: readNode,
  "identity-master": readIdentityMaster,
  "identity-value": readIdentityValue,
  ipcache: readIpcache,
  service: readService,
  endpoint: readEndpoint,
  policy: readPolicy,
  pod: readPod,
};

const KIND_TYPE: Record<Exclude<RecordKind, "identities">, RecordType> = {
  nodes: "node",
  ipcache: "ipcache",
  services: "service",
  endpoints: "endpoint",
  policies: "policy",
  pods: "pod",
};

/** What a state key holds; identities' lock keys hold no record. */
export function recordTypeOf(key: StateKey, rawKey: string): RecordType {
  if (key.kind !== "identities") return KIND_TYPE[key.kind];
  if (key.path[0] === "id" && key.path.length === 2) return "identity-master";
  if (key.path[0] === "value" && key.path.length === 3) return "identity-value";
  throw new InvalidInputError(`kvstore key ${JSON.stringify(rawKey)}: holds no identity record (expected .../id/<ID> or .../value/<labels>/<node>)`);
}

export interface DecodedRecord {
  key: StateKey;
  type: RecordType;
  record: AnyRecord;
}

/** Reads the value stored at `key`. */
export function decodeRecord(rawKey: string, value: string | Uint8Array): DecodedRecord {
  const key = parseStateKey(rawKey);
  const type = recordTypeOf(key, rawKey);
  const text = typeof value === "string" ? value : new TextDecoder().decode(value);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new InvalidInputError(`kvstore key ${rawKey}: value is not JSON (${(err as Error).message})`);
  }
  return { key, type, record: READERS[type](json, rawKey, "decode") };
}

/** Cuts `input` down to the fields agents use, validates it, and returns its canonical JSON. */
export function encodeRecord<T extends RecordType>(type: T, input: unknown, where: string = type): string {
  return JSON.stringify(READERS[type](input, where, "slim"));
}

/** Validates and returns the slim form of `input` without encoding it. */
export function slimRecord<T extends RecordType>(type: T, input: unknown, where: string = type): RecordTypes[T] {
  return READERS[type](input, where, "slim") as RecordTypes[T];
}
