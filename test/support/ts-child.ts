/**
 * How a test starts a child process on membrane's TypeScript sources (a
 * writer to SIGKILL, a second operator, a racing allocator): plain
 * `node --import ts-register.mjs file.ts`, whose hooks (ts-hooks.mjs)
 * transpile on load, so no child depends on a prior build.
 */
import { join } from "node:path";

export const REPO_ROOT = join(import.meta.dirname, "..", "..");
const REGISTER = join(import.meta.dirname, "ts-register.mjs");

/** The node arguments that run the TypeScript file `script` with `args`. */
export function tsNodeArgs(script: string, ...args: string[]): string[] {
  return ["--import", REGISTER, script, ...args];
}
