/**
 * Programs a datapath (the Wasm core or the kernel program: DatapathEngine)
 * from a state: the services, then the policy tables (endpoints, ipcache,
 * policy entries). The NAT configuration and the table sizes are the
 * options the engine was created with (`state.options`). Replay, the
 * agent's forwarder and the tests all program through this, so they get the
 * same tables and the same warnings; callers print the warnings.
 */
import type { DatapathEngine } from "../engine.js";
import { ServiceManager } from "../lb/manager.js";
import { PolicyDatapathWriter } from "../policy/datapath-writer.js";
import type { DatapathState } from "./schema.js";
import { applyServices } from "./services.js";

/** What programming needs of an engine; the Wasm Datapath brings its own service manager (so later changes go through it). */
export type ProgrammableDatapath = Pick<DatapathEngine, "lbTables" | "policyTables"> & { readonly services?: ServiceManager };

/** Programs `engine` from `state`; returns the warnings (e.g. a Maglev table small for its backends). */
export function programDatapath(engine: ProgrammableDatapath, state: DatapathState): string[] {
  const warnings: string[] = [];
  if (state.services?.length) {
    const manager = engine.services ?? new ServiceManager([engine.lbTables()], state.options.lb);
    warnings.push(...applyServices(manager, state.services));
  }
  if (state.policy) new PolicyDatapathWriter([engine.policyTables()]).applyChange(state.policy);
  return warnings;
}
