/**
 * The whole state file's schema: the sections together, in the order their
 * validators run (the datapath options first: their sizes bound the
 * services and the policy tables). A top-level key no section owns is
 * refused; every message starts with the key path from the top of the file.
 */
import { InvalidInputError } from "../errors.js";
import type { ResolvedOptions } from "../config.js";
import type { ServiceSpec } from "../lb/manager.js";
import type { EngineChange, PolicyEngine } from "../policy/engine.js";
import { datapathSection } from "./datapath-options.js";
import { servicesSection } from "./services.js";
import { policySection } from "./policy.js";
import { sectionOf, type SectionContext } from "./section.js";

/** Every key the file may hold, and the section that owns it. */
export const STATE_KEYS: readonly string[] = [...datapathSection.keys, ...servicesSection.keys, ...policySection.keys];

/** A state file, validated completely. */
export interface MembraneState {
  /** The file as read: what a write starts from (so keys are kept as written). */
  raw: Record<string, unknown>;
  options: ResolvedOptions;
  services: ServiceSpec[];
  /** The policy engine rebuilt from endpoints, policies and identities. */
  engine: PolicyEngine;
  /** Whether the file holds endpoints or policies. */
  hasPolicy: boolean;
  /** What the file holds that is ignored (programming's own warnings come from programDatapath). */
  warnings: string[];
}

/**
 * Validates a parsed state file; throws InvalidInputError "state file
 * <file>: <key path>: <why>". `file` names it in messages only.
 */
export function validateState(raw: unknown, file: string): MembraneState {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new InvalidInputError(`state file ${file}: expected a JSON object, got ${raw === null ? "null" : Array.isArray(raw) ? "a list" : typeof raw}`);
  const o = raw as Record<string, unknown>;
  try {
    for (const k of Object.keys(o)) {
      if (!STATE_KEYS.includes(k)) throw new InvalidInputError(`${k}: unknown key (allowed: ${STATE_KEYS.join(", ")})`);
    }
    const warnings: string[] = [];
    const context: SectionContext = { options: datapathSection.read(sectionOf(o, datapathSection.keys), { warnings }), warnings };
    const services = servicesSection.read(sectionOf(o, servicesSection.keys), context);
    const { engine, present } = policySection.read(sectionOf(o, policySection.keys), context);
    return { raw: o, options: context.options, services, engine, hasPolicy: present, warnings: context.warnings };
  } catch (err) {
    if (err instanceof InvalidInputError) throw new InvalidInputError(`state file ${file}: ${err.message}`, { cause: err });
    throw err;
  }
}

/**
 * What a datapath is programmed with (plain data: it crosses into the
 * forwarder's worker thread): the options it is created with (NAT
 * configuration included), the services, and the policy tables as one
 * change from empty tables.
 */
export interface DatapathState {
  options: ResolvedOptions;
  services?: readonly ServiceSpec[];
  /** Endpoints, ipcache and policy entries (PolicyEngine.snapshot()); absent when the file holds no policy. */
  policy?: EngineChange;
}

export function datapathState(state: MembraneState): DatapathState {
  return { options: state.options, services: state.services, policy: state.hasPolicy ? state.engine.snapshot() : undefined };
}
