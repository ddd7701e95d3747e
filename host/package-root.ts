import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

let cached: string | undefined;

/** The membrane package directory, found from this file whether it runs from host/ (tests) or dist/host/. */
export function packageRoot(): string {
  if (cached) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, "package.json");
    if (existsSync(pkg) && JSON.parse(readFileSync(pkg, "utf8")).name === "membrane") return (cached = dir);
    const up = dirname(dir);
    if (up === dir) throw new Error("membrane package.json not found above " + fileURLToPath(import.meta.url));
    dir = up;
  }
}
