/**
 * The state file (`--config`) as a JSON object, read once for every part that
 * owns keys in it (datapath options, services, policy). Errors name the file.
 */
import { readFileSync } from "node:fs";
import { InvalidInputError } from "../errors.js";

/** The whole state file as JSON ({} when it does not exist yet). */
export function readStateObject(path: string, mayBeMissing = false): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if (mayBeMissing && (err as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw new InvalidInputError(`read state file ${path}: ${(err as Error).message}`, { cause: err });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new InvalidInputError(`parse state file ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new InvalidInputError(`state file ${path}: expected a JSON object`);
  return parsed as Record<string, unknown>;
}
