/** Reading API query parameters: a whole number or nothing, refused clearly otherwise. */
import { InvalidInputError } from "../errors.js";

export function intQuery(q: URLSearchParams, name: string, what: string): number | undefined {
  const v = q.get(name);
  if (v === null) return undefined;
  if (!/^\d+$/.test(v)) throw new InvalidInputError(`${what}: ${name} must be a whole number, got ${JSON.stringify(v)}`);
  return Number(v);
}
