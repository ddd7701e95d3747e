/**
 * Policy tables that hold nothing but count: sized from the configuration
 * (policy.endpoints, policy.ipcache, policy.entries), they let the policy
 * writer check a state file against the datapath before any datapath exists.
 * Both datapaths have exactly these capacities (host/policy/options.ts: the
 * Wasm core's struct policy_config and the kernel maps' max_entries are the
 * same numbers), so a state file that passes here fits either; the writer's
 * message names the Wasm datapath, the reference one.
 */
import type { ResolvedPolicyOptions } from "../policy/options.js";
import { policyMapSizes } from "../policy/options.js";
import type { PolicyTableName, PolicyTableStore } from "../policy/tables.js";

export class CapacityPolicyTables implements PolicyTableStore {
  readonly engine = "wasm";
  private readonly sizes: Record<string, number>;

  constructor(options: ResolvedPolicyOptions) {
    this.sizes = policyMapSizes(options);
  }

  capacity(table: PolicyTableName): number {
    return this.sizes[table]!;
  }

  /** Nothing is kept: the writer checks capacity before it calls this. */
  upsert(): void {}

  delete(): boolean {
    return false;
  }

  dump(): Array<[Uint8Array, Uint8Array]> {
    return [];
  }
}
