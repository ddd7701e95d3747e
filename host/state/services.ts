/**
 * The `services` key of the state file (`--config`): a list of services as
 * the service manager takes them (vip, port, proto, algorithm, backends).
 * Read by replay, the agent and `membrane service list`. The whole list is
 * validated before anything is written: a dry run through a service manager
 * with no datapath (same ids, same capacity checks), errors naming the field
 * path ("services[1].backends[0].port: ...").
 */
import { InvalidInputError } from "../errors.js";
import { ServiceManager, type ServiceSpec } from "../lb/manager.js";
import type { ResolvedLbOptions } from "../lb/options.js";

export const SERVICE_STATE_KEYS = ["services"] as const;

const SERVICE_FIELDS = ["vip", "port", "proto", "algorithm", "backends", "maglevM"];

/** The state file without the services key: what the datapath configuration validator reads. */
export function withoutServiceState(parsed: unknown): unknown {
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return parsed;
  const rest: Record<string, unknown> = { ...(parsed as Record<string, unknown>) };
  for (const k of SERVICE_STATE_KEYS) delete rest[k];
  return rest;
}

/**
 * The state file's services, validated completely against the datapath's LB
 * options (input, duplicates, table capacity). Throws InvalidInputError naming
 * the path; returns [] when the key is absent.
 */
export function servicesFromState(parsed: unknown, lb: ResolvedLbOptions): ServiceSpec[] {
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return [];
  const value = (parsed as Record<string, unknown>).services;
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new InvalidInputError(`services: expected a list, got ${JSON.stringify(value)}`);
  const dryRun = new ServiceManager([], lb);
  const seen = new Map<string, number>();
  value.forEach((spec, i) => {
    const at = `services[${i}]`;
    if (typeof spec !== "object" || spec === null || Array.isArray(spec)) throw new InvalidInputError(`${at}: expected an object, got ${JSON.stringify(spec)}`);
    for (const k of Object.keys(spec)) if (!SERVICE_FIELDS.includes(k)) throw new InvalidInputError(`${at}.${k}: unknown field (allowed: ${SERVICE_FIELDS.join(", ")})`);
    let frontend: string;
    try {
      const { service } = dryRun.upsertService(spec as ServiceSpec);
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
  return value as ServiceSpec[];
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
