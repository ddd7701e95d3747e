/**
 * One section of the state file: the top-level keys a feature owns and the
 * validator for them. The schema (host/state/schema.ts) is the sections
 * together: a key no section owns is refused, and each validator sees only
 * its own keys, so no section can swallow another's mistakes.
 */
import type { ResolvedOptions } from "../config.js";

/** What the sections validated before this one produced (the datapath options come first: sizes bound the rest). */
export interface SectionContext {
  options: ResolvedOptions;
  /** Non-fatal findings, in the words the user reads ("policy: ..."). */
  warnings: string[];
}

/** The datapath options section runs first, with only somewhere to put warnings. */
export type FirstSectionContext = Pick<SectionContext, "warnings">;

export interface StateSection<T, C = SectionContext> {
  /** For messages: "datapath options", "services", "policy". */
  readonly name: string;
  /** The top-level keys this section owns. */
  readonly keys: readonly string[];
  /**
   * Validates the section completely (`section` holds only its keys, absent
   * ones missing). Throws InvalidInputError whose message starts with the
   * full key path from the top of the file ("services[1].backends[0].port: ...").
   */
  read(section: Record<string, unknown>, context: C): T;
}

/** The keys of `raw` that `section` owns. */
export function sectionOf(raw: Record<string, unknown>, keys: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of keys) if (raw[k] !== undefined) out[k] = raw[k];
  return out;
}
