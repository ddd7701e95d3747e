/**
 * What an agent reads from each prefix it follows, decoded once on arrival
 * (the reflectors keep the decoded form; a record that does not decode is
 * skipped with a log line naming key and field).
 */
import { InvalidInputError } from "../errors.js";
import type { Identity } from "../identity/allocator.js";
import { LabelSet } from "../identity/labels.js";
import { keys } from "../kvstore/keys.js";
import { decodeRecord, type RecordTypes } from "../kvstore/records/codec.js";
import type { KeyValue } from "../kvstore/store.js";
import type { NodeRecord } from "../kvstore/records/node.js";
import { MANIFEST_ROOT } from "../operator/manifest-store.js";
import type { PodRecord } from "../kvstore/records/pod.js";
import { parseDocument, type PolicyDocument } from "../policy/document.js";

/** Pod manifests (the desired pods, as `membrane apply` stored them): what the operator reads; agents follow their node's pod records instead. */
export const PODS_PREFIX = `${MANIFEST_ROOT}pods/`;

function typed<T extends keyof RecordTypes>(kv: KeyValue, type: T): RecordTypes[T] {
  const d = decodeRecord(kv.key, kv.value);
  if (d.type !== type) throw new InvalidInputError(`kvstore key ${kv.key}: holds a ${d.type} record, expected ${type}`);
  return d.record as RecordTypes[T];
}

export const decodeNode = (kv: KeyValue) => typed(kv, "node");
/** Two decoded node records say the same thing (readNode builds every record with one field order, so equal JSON is equal records). */
export const sameNodeRecord = (a: NodeRecord, b: NodeRecord): boolean => JSON.stringify(a) === JSON.stringify(b);
export const decodeIpcache = (kv: KeyValue) => typed(kv, "ipcache");
export const decodeService = (kv: KeyValue) => typed(kv, "service");

/** An identity master key: the cluster identity's number is the key's last segment. */
export function decodeIdentityMaster(kv: KeyValue): Identity {
  const record = typed(kv, "identity-master");
  return { id: identityIdOfKey(kv.key), labels: LabelSet.parse(record.labels, kv.key), kind: "endpoint" };
}

export function identityIdOfKey(key: string): number {
  const id = Number(key.slice(keys.identityMasters().length));
  if (!Number.isInteger(id) || id <= 0) throw new InvalidInputError(`kvstore key ${key}: the identity number is not a whole number`);
  return id;
}

export interface PolicyItem {
  name: string;
  document: PolicyDocument;
}

export function decodePolicy(kv: KeyValue): PolicyItem {
  const record = typed(kv, "policy");
  return { name: record.name, document: parseDocument(record.document, kv.key) };
}

/**
 * A pod record under this node's prefix (the operator writes one per pod
 * under the node it runs on); one naming another node is refused, naming
 * the key, so a misplaced record never becomes a local endpoint.
 */
export function localPodDecoder(node: string): (kv: KeyValue) => PodRecord {
  return (kv) => {
    const pod = typed(kv, "pod");
    if (pod.node !== node) throw new InvalidInputError(`kvstore key ${kv.key}: node: the pod runs on ${pod.node}, not on ${node}`);
    return pod;
  };
}
