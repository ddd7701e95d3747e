/**
 * Validators for values in configuration and records, shared by every
 * feature's options: each throws InvalidInputError naming the key path.
 */
import { InvalidInputError } from "./errors.js";

/** `value` as an integer in min..max, or InvalidInputError "<path>: expected an integer from min to max, got ...". */
export function integerInRange(value: unknown, min: number, max: number, path: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidInputError(`${path}: expected an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
  }
  return value;
}
