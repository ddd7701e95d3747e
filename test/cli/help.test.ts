/**
 * Every command of the tree, walked from the program main.ts builds (so a
 * group registered by any branch is covered without being listed here):
 * `--help` exits 0 with the command's usage, its options and an example; an
 * unknown option exits 2 and prints that command's usage. Run as a user runs
 * it: the built CLI in a child process.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "commander";
import { describe, expect, test } from "vitest";
import { buildProgram } from "../../host/cli/main.js";

const ROOT = join(import.meta.dirname, "../..");
const MAIN = join(ROOT, "dist/host/cli/main.js");

function walk(cmd: Command, path: string[] = []): Array<{ path: string[]; cmd: Command }> {
  return [{ path, cmd }, ...cmd.commands.flatMap((sub) => walk(sub, [...path, sub.name()]))];
}

const silent = { out: () => {}, err: () => {} };
const commands = walk(buildProgram(silent));

function membrane(...args: string[]) {
  const r = spawnSync(process.execPath, [MAIN, ...args], { cwd: ROOT, encoding: "utf8", env: { ...process.env, MEMBRANE_DEBUG: "" } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe("membrane --help", () => {
  test("the built CLI exists (npm run build:host)", () => {
    expect(existsSync(MAIN)).toBe(true);
  });

  test("the tree has every group (a group that fails to register would shrink it)", () => {
    const names = commands.map((c) => c.path.join(" "));
    for (const expected of ["replay", "agent", "status", "demo", "service list", "policy import", "policy get", "policy delete", "policy trace",
      "identity list", "endpoint list", "endpoint add", "endpoint delete", "bpf ct list", "bpf nat list", "bpf nat flush", "bpf lb list",
      "bpf policy get", "bpf endpoint list"]) {
      expect(names).toContain(expected);
    }
  });

  test.each(commands.map((c) => [c.path.join(" ") || "(membrane)", c] as const))("%s --help: exit 0, usage, options, example", (_name, { path, cmd }) => {
    const r = membrane(...path, "--help");
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    const words = ["membrane", ...path].join(" ");
    expect(r.out).toMatch(new RegExp(`^Usage: ${words.replace(/ /g, "\\s")} `));
    // Every option the command declares is described.
    for (const option of cmd.options) expect(r.out).toContain(option.flags);
    expect(r.out).toContain("-h, --help");
    const example = /\nExamples?:\n((?: {2}\$ .+\n?)+)/.exec(r.out);
    expect(example, `no Example section in:\n${r.out}`).not.toBeNull();
    expect(example![1]).toContain(words);
  });

  test.each(commands.map((c) => [c.path.join(" ") || "(membrane)", c] as const))("%s --no-such-option: exit 2 with its usage", (_name, { path }) => {
    const r = membrane(...path, "--no-such-option");
    expect(r.code).toBe(2);
    expect(r.out).toBe("");
    const words = ["membrane", ...path].join(" ");
    expect(r.err).toContain(`${words}: Unknown option '--no-such-option'`);
    expect(r.err).toContain(`Usage: ${words} `);
    expect(r.err).not.toMatch(/\n\s+at /); // no stack
  });

  test("every command that prints a table has --json", () => {
    const tables = ["replay", "status", "demo", "service list", "policy get", "policy trace", "identity list", "endpoint list",
      "bpf ct list", "bpf nat list", "bpf lb list", "bpf policy get", "bpf endpoint list"];
    const byName = new Map(commands.map((c) => [c.path.join(" "), c.cmd]));
    for (const name of tables) expect(byName.get(name)?.options.map((o) => o.long), name).toContain("--json");
  });

  test("no arguments: the overview on stderr, exit 2", () => {
    const r = membrane();
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^Usage: membrane /);
  });

  test("`membrane help <command>` is that command's help", () => {
    const r = membrane("help", "replay");
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^Usage: membrane replay <capture> \[options\]/);
  });
});
