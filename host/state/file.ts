/**
 * The state file (`--config`): the datapath configuration as JSON. Later
 * capabilities (services, NAT, policy) add their own top-level keys here.
 */
import { InvalidInputError } from "../errors.js";
import { readStateObject } from "./read.js";
import { resolveOptions, type DatapathOptions, type ResolvedOptions } from "../config.js";
import { withoutPolicyState } from "./policy.js";
import { servicesFromState, withoutServiceState } from "./services.js";
import type { ServiceSpec } from "../lb/manager.js";

export function loadStateFile(path: string): ResolvedOptions {
  return loadState(path).options;
}

/** The datapath options and the services (host/lb/state.ts), both validated completely. */
export function loadState(path: string): { options: ResolvedOptions; services: ServiceSpec[] } {
  const parsed = readStateObject(path);
  try {
    const options = resolveOptions(withoutServiceState(withoutPolicyState(parsed)) as DatapathOptions);
    return { options, services: servicesFromState(parsed, options.lb) };
  } catch (err) {
    throw new InvalidInputError(`state file ${path}: ${(err as Error).message}`, { cause: err });
  }
}
