/**
 * membrane as a user installs it. The working tree's sources (tracked and
 * untracked files, no dist/ or build/: what a git clone has) are copied
 * aside, `npm pack` builds them through the `prepare` script, and the tarball
 * is installed into a new project offline; the README's library example
 * (examples/library.mjs) and the `membrane` command then run from there.
 *
 * Offline: the project gets a lockfile pinning membrane's dependencies to the
 * versions and integrity hashes of this repository's package-lock.json, so
 * npm reads their tarballs from its cache. A plain `npm install --offline
 * <tarball>` resolves afresh, and npm 11 asks for full registry documents
 * that the cache does not hold for every dependency (koffi, long,
 * undici-types).
 */
import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

const ROOT = join(import.meta.dirname, "../..");
const work = mkdtempSync(join(tmpdir(), "membrane-pack-"));
const clone = join(work, "membrane");
const project = join(work, "project");
afterAll(() => rmSync(work, { recursive: true, force: true }));

interface Lock { packages: Record<string, { version?: string; dev?: boolean; resolved?: string; integrity?: string; [k: string]: unknown }> }

function sh(cmd: string, args: string[], cwd: string) {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8", env: { ...process.env, npm_config_update_notifier: "false" } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** The files a clone of the working tree would have: tracked and untracked, not ignored (no dist/, build/, node_modules/). */
function copySources(): void {
  const files = execFileSync("git", ["ls-files", "-co", "--exclude-standard", "-z"], { cwd: ROOT, encoding: "utf8" }).split("\0").filter(Boolean);
  for (const f of files) {
    if (f.startsWith("node_modules") || !existsSync(join(ROOT, f))) continue; // deleted but not yet committed
    mkdirSync(dirname(join(clone, f)), { recursive: true });
    cpSync(join(ROOT, f), join(clone, f));
  }
  // The build tools (assemblyscript, typescript) as `npm install` in a clone provides them.
  symlinkSync(join(ROOT, "node_modules"), join(clone, "node_modules"));
}

/** A project depending on the tarball, with a lockfile pinning the dependencies as this repository does. */
function writeProject(tarball: string): void {
  mkdirSync(project);
  const name = "membrane.tgz";
  cpSync(tarball, join(project, name));
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
  const repoLock = JSON.parse(readFileSync(join(ROOT, "package-lock.json"), "utf8")) as Lock;
  const registry = sh("npm", ["config", "get", "registry"], project).out.trim().replace(/\/?$/, "/");
  const integrity = "sha512-" + createHash("sha512").update(readFileSync(join(project, name))).digest("base64");
  const packages: Lock["packages"] = {
    "": { name: "membrane-user", version: "1.0.0", dependencies: { membrane: `file:${name}` } },
    "node_modules/membrane": { version: pkg.version, resolved: `file:${name}`, integrity, license: pkg.license, dependencies: pkg.dependencies, bin: pkg.bin, engines: pkg.engines },
  };
  for (const [path, entry] of Object.entries(repoLock.packages)) {
    if (!path.startsWith("node_modules/") || entry.dev) continue;
    const dep = path.slice(path.lastIndexOf("node_modules/") + "node_modules/".length);
    // Where the tarball lives, as npm records it when it installs from the registry (the cache is keyed by it).
    packages[path] = { resolved: `${registry}${dep}/-/${dep.split("/").pop()}-${entry.version}.tgz`, ...entry };
  }
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "membrane-user", version: "1.0.0", private: true, type: "module", dependencies: { membrane: `file:${name}` } }, null, 2));
  writeFileSync(join(project, "package-lock.json"), JSON.stringify({ name: "membrane-user", version: "1.0.0", lockfileVersion: 3, requires: true, packages }, null, 2));
}

let tarball = "";
let packed: { code: number | null; err: string };
let clonedBuildOutput: string[] = [];

beforeAll(() => {
  copySources();
  clonedBuildOutput = ["dist", "build"].filter((d) => existsSync(join(clone, d)));
  const dest = join(work, "tarball");
  mkdirSync(dest);
  const r = sh("npm", ["pack", "--pack-destination", dest], clone);
  packed = r;
  const files = readdirSync(dest).filter((f) => f.endsWith(".tgz"));
  if (files.length === 1) tarball = join(dest, files[0]!);
}, 600_000);

describe("membrane installed from its package", () => {
  test("a clone has no build output; npm pack builds it with the prepare script", () => {
    expect(clonedBuildOutput).toEqual([]);
    expect(packed.err).not.toMatch(/npm error/);
    expect(packed.code).toBe(0);
    expect(tarball).not.toBe("");
    expect(existsSync(join(clone, "dist/host/index.js"))).toBe(true);
    expect(existsSync(join(clone, "build/membrane.wasm"))).toBe(true);
  });

  test("the tarball holds the library, the Wasm, the CLI and the examples; no benches, no BPF objects", () => {
    const list = execFileSync("tar", ["-tzf", tarball], { encoding: "utf8" }).split("\n").filter(Boolean);
    for (const f of ["package/package.json", "package/dist/host/index.js", "package/dist/host/index.d.ts", "package/dist/host/packet/index.js",
      "package/dist/host/pcap/index.js", "package/dist/host/cli/main.js", "package/build/membrane.wasm", "package/build/membrane.debug.wasm",
      "package/examples/library.mjs", "package/examples/sample.pcap"]) {
      expect(list).toContain(f);
    }
    expect(list.filter((f) => f.startsWith("package/dist/bench/"))).toEqual([]);
    expect(list.filter((f) => f.startsWith("package/build/bpf/"))).toEqual([]);
  });

  test("installs offline into a new project; the README's library example runs there", () => {
    writeProject(tarball);
    const install = sh("npm", ["ci", "--offline", "--no-audit", "--no-fund"], project);
    expect(install.err).not.toMatch(/npm error/);
    expect(install.code).toBe(0);
    expect(existsSync(join(project, "node_modules/build"))).toBe(false);
    cpSync(join(project, "node_modules/membrane/examples/library.mjs"), join(project, "library.mjs"));
    const r = sh(process.execPath, ["library.mjs"], project);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out.split("\n").slice(0, 4)).toEqual([
      "SYN      pass new egress",
      "SYN-ACK  pass reply ingress",
      "ACK      pass established egress",
      "tcp4 10.0.1.10:40000 -> 10.0.2.20:80 expires in 21600 s",
    ]);
  }, 300_000);

  test("the installed `membrane` command runs: help, and the replay of the shipped sample", () => {
    const bin = join(project, "node_modules/.bin/membrane");
    const help = sh(bin, ["replay", "--help"], project);
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/^Usage: membrane replay <capture> \[options\]/);
    const r = sh(bin, ["replay", "node_modules/membrane/examples/sample.pcap", "--summary"], project);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out).toContain("24 packets: 23 passed, 1 dropped");
  });
});
