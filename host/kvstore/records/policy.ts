/**
 * A policy: the document as membrane's policy parser accepts it (validated
 * in full here, so an agent never receives a rule it would reject halfway
 * through applying it).
 */
import { parseDocument } from "../../policy/document.js";
import { fail, object, text, type Mode } from "./fields.js";

export interface PolicyRecord {
  /** "namespace/name", or "name" for a cluster-wide policy. */
  name: string;
  document: unknown;
}

export function readPolicy(v: unknown, path: string, mode: Mode): PolicyRecord {
  const o = object(v, path, mode, ["name", "document"]);
  const name = text(o.name, `${path}.name`);
  const parsed = parseDocument(o.document, `${path}.document`);
  if (parsed.name !== name) fail(`${path}.name`, `"${name}" but the document is ${parsed.name}`);
  return { name, document: o.document };
}
