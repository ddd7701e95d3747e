/**
 * The `services` section of the state file: a list of services as the
 * service manager takes them (vip, port, proto, algorithm, backends). The
 * whole list is validated before anything is written: a dry run through a
 * service manager with no datapath (same ids, same capacity checks), errors
 * naming the field path ("services[1].backends[0].port: ...").
 */
import { InvalidInputError } from "../errors.js";
import { ServiceManager, type ServiceSpec } from "../lb/manager.js";
import type { ResolvedLbOptions } from "../lb/options.js";
import type { StateSection } from "./section.js";

const SERVICE_FIELDS = ["vip", "port", "proto", "algorithm", "backends", "maglevM"];

export const servicesSection: StateSection<ServiceSpec[]> = {
  name: "services",
  keys: ["services"],
  // The dry run's warnings are programming's too: programDatapath returns them, so they are not reported twice.
  read: (section, { options }) => validateServices(section.services, options.lb).services,
};

/**
 * The services, validated completely against the datapath's LB options
 * (input, duplicates, table capacity), with the warnings programming them
 * will give. Throws InvalidInputError naming the path; [] when absent.
 */
export function validateServices(value: unknown, lb: ResolvedLbOptions): { services: ServiceSpec[]; warnings: string[] } {
  if (value === undefined) return { services: [], warnings: [] };
  if (!Array.isArray(value)) throw new InvalidInputError(`services: expected a list, got ${JSON.stringify(value)}`);
  const dryRun = new ServiceManager([], lb);
  const seen = new Map<string, number>();
  const warnings: string[] = [];
  value.forEach((spec, i) => {
    const at = `services[${i}]`;
    if (typeof spec !== "object" || spec === null || Array.isArray(spec)) throw new InvalidInputError(`${at}: expected an object, got ${JSON.stringify(spec)}`);
    for (const k of Object.keys(spec)) if (!SERVICE_FIELDS.includes(k)) throw new InvalidInputError(`${at}.${k}: unknown field (allowed: ${SERVICE_FIELDS.join(", ")})`);
    let frontend: string;
    try {
      const { service, warnings: w } = dryRun.upsertService(spec as ServiceSpec);
      warnings.push(...w);
      frontend = `${service.vip} port ${service.port}/${service.proto}`;
    } catch (err) {
      if (!(err instanceof InvalidInputError)) throw err;
      // The manager names fields relative to the service ("service.port", "service tcp:10.96.0.10:80: backends[0].addr").
      throw new InvalidInputError(`${at}${managerPath(err.message)}`, { cause: err });
    }
    const first = seen.get(frontend);
    if (first !== undefined) throw new InvalidInputError(`${at}: ${frontend} is already services[${first}]`);
    seen.set(frontend, i);
  });
  return { services: value as ServiceSpec[], warnings };
}

/** "service.port: x" -> ".port: x"; "service tcp:10.96.0.10:80: backends[0].addr: x" -> ".backends[0].addr: x"; else ": message". */
function managerPath(message: string): string {
  const field = /^service\.(\S+?): (.*)$/s.exec(message);
  if (field) return `.${field[1]}: ${field[2]}`;
  const nested = /^service \S+: ((?:backends\[\d+\](?:\.\w+)?|algorithm|maglevM|backends)): (.*)$/s.exec(message);
  if (nested) return `.${nested[1]}: ${nested[2]}`;
  return `: ${message}`;
}

/** Programs the (validated) services through `manager`; returns the manager's warnings. */
export function applyServices(manager: ServiceManager, services: readonly ServiceSpec[]): string[] {
  return services.flatMap((s) => manager.upsertService(s).warnings);
}
