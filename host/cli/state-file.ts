/**
 * The state file (`--config`): the datapath configuration as JSON. Later
 * capabilities (services, NAT, policy) add their own top-level keys here.
 */
import { readFileSync } from "node:fs";
import { InvalidInputError } from "../errors.js";
import { resolveOptions, type DatapathOptions, type ResolvedOptions } from "../config.js";
import { withoutPolicyState } from "../policy/state.js";

export function loadStateFile(path: string): ResolvedOptions {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new InvalidInputError(`read state file ${path}: ${(err as Error).message}`, { cause: err });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new InvalidInputError(`parse state file ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    return resolveOptions(withoutPolicyState(parsed) as DatapathOptions);
  } catch (err) {
    throw new InvalidInputError(`state file ${path}: ${(err as Error).message}`, { cause: err });
  }
}
