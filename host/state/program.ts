/**
 * Programs a datapath (the Wasm core or the kernel program: DatapathEngine)
 * from a state: the services, then the policy tables (endpoints, ipcache,
 * policy entries). The NAT configuration and the table sizes are the
 * options the engine was created with (`state.options`). Replay, the
 * agent's forwarder and the tests all program through this, so they get the
 * same tables and the same warnings; callers print the warnings.
 */
import type { ResolvedOptions } from "../config.js";
import type { DatapathEngine } from "../engine.js";
import { InvalidInputError } from "../errors.js";
import { ServiceManager } from "../lb/manager.js";
import { PolicyDatapathWriter } from "../policy/datapath-writer.js";
import type { DatapathState } from "./schema.js";
import { applyServices } from "./services.js";

/** What programming needs of an engine; the Wasm Datapath brings its own service manager (so later changes go through it). */
export type ProgrammableDatapath = Pick<DatapathEngine, "lbTables" | "policyTables"> & { readonly services?: ServiceManager; readonly options?: ResolvedOptions };

/** The parts of the options a datapath is built with that the state's tables depend on. */
const BUILT_WITH = ["nat", "lb", "policy"] as const;

/** Programs `engine` from `state`; returns the warnings (e.g. a Maglev table small for its backends). */
export function programDatapath(engine: ProgrammableDatapath, state: DatapathState): string[] {
  // NAT configuration and table sizes are fixed when a datapath is created: one built from other options
  // would hold these tables under a different meaning, so it is refused rather than half-programmed.
  for (const key of BUILT_WITH) {
    if (engine.options && JSON.stringify(engine.options[key]) !== JSON.stringify(state.options[key])) {
      throw new InvalidInputError(`program datapath: it was created with other ${key} options than the state's; create it with the state's options`);
    }
  }
  const warnings: string[] = [];
  if (state.services?.length) {
    const manager = engine.services ?? new ServiceManager([engine.lbTables()], state.options.lb);
    warnings.push(...applyServices(manager, state.services));
  }
  if (state.policy) new PolicyDatapathWriter([engine.policyTables()]).applyChange(state.policy);
  return warnings;
}
