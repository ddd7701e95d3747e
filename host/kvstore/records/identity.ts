/**
 * Identity records (Cilium 1.5's allocator layout):
 * - master `identities/v1/id/<ID>` -> the label set, created only if absent, no lease;
 * - per node `identities/v1/value/<labels>/<node>` -> the ID, bound to the node's lease.
 */
import { LabelSet } from "../../identity/labels.js";
import { MAX_ENDPOINT_IDENTITY, MIN_ENDPOINT_IDENTITY } from "../../identity/allocator.js";
import { fail, integer, list, object, type Mode } from "./fields.js";

export interface IdentityMasterRecord {
  /** Canonical `source:key=value` strings, sorted (LabelSet order). */
  labels: string[];
}

export interface IdentityValueRecord {
  id: number;
}

export function readIdentityMaster(v: unknown, path: string, mode: Mode): IdentityMasterRecord {
  const o = object(v, path, mode, ["labels"]);
  const given = list(o.labels, `${path}.labels`);
  const set = LabelSet.parse(given, `${path}.labels`);
  if (set.labels.length === 0) fail(`${path}.labels`, "an identity needs at least one label");
  return { labels: set.toStrings() };
}

export function readIdentityValue(v: unknown, path: string, mode: Mode): IdentityValueRecord {
  const o = object(v, path, mode, ["id"]);
  return { id: integer(o.id, `${path}.id`, MIN_ENDPOINT_IDENTITY, MAX_ENDPOINT_IDENTITY) };
}
