/**
 * The datapath's section of the state file: conntrack, fragments, hashSeed,
 * policy (table sizes), lb and nat, as DatapathOptions (host/config.ts).
 *
 * `policy` once held the policy entries by endpoint id (`{"1": [...]}`);
 * they now live under `policyEntries`. That older form is recognised only
 * when it is exactly that (every key an endpoint id, every value a list):
 * it is recomputed output, so it is ignored with a warning and the next
 * write drops it. Anything else under `policy` is table sizes and is checked
 * as such, so a size next to a list is never skipped.
 */
import { DATAPATH_OPTION_KEYS, resolveOptions, type DatapathOptions, type ResolvedOptions } from "../config.js";
import type { FirstSectionContext, StateSection } from "./section.js";
import { InvalidInputError } from "../errors.js";
import { readStateObject } from "./read.js";

export const datapathSection: StateSection<ResolvedOptions, FirstSectionContext> = {
  name: "datapath options",
  keys: DATAPATH_OPTION_KEYS,
  read: (section, { warnings }) => {
    const options = { ...section };
    if (isOlderPolicyEntries(options.policy)) {
      warnings.push("policy: policy entries by endpoint id (an older membrane's) are ignored: they are recomputed into policyEntries, and the next write drops them");
      delete options.policy;
    }
    return resolveOptions(options as DatapathOptions);
  },
};

/** `{"1": [...], "2": []}`: entries by endpoint id, nothing else. */
export function isOlderPolicyEntries(v: unknown): boolean {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
  const entries = Object.entries(v);
  return entries.length > 0 && entries.every(([k, list]) => /^[1-9]\d{0,4}$/.test(k) && Array.isArray(list));
}

/**
 * A file holding only the datapath section (`membrane agent --kvstore
 * --datapath-options FILE`: a cluster agent has no state file, but takes the
 * same options, nat included): read and validated exactly as that section of
 * a state file; errors name the file and the key.
 */
export function loadDatapathOptionsFile(path: string): ResolvedOptions {
  const section = readStateObject(path);
  try {
    return datapathSection.read(section, { warnings: [] });
  } catch (err) {
    if (err instanceof InvalidInputError) throw new InvalidInputError(`${path}: ${err.message}`, { cause: err });
    throw err;
  }
}
