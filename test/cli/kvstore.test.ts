/**
 * `membrane kvstore ...` through commander, on the embedded backend (the
 * lead wires registerKvstore into main.ts; this builds its own program).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { registerKvstore } from "../../host/cli/kvstore.js";
import type { Output } from "../../host/format/output.js";
import { waitFor } from "../support/wait-for.js";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "membrane-cli-kv-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function run(args: string[], watchSignal?: AbortSignal, out: string[] = []): Promise<{ out: string[]; err: string[]; help: string }> {
  const err: string[] = [];
  let help = "";
  const io: Output = { out: (l) => out.push(l), err: (l) => err.push(l) };
  const program = new Command("membrane").exitOverride();
  registerKvstore(program, { output: () => io, watchSignal });
  const configure = (c: Command) => {
    c.exitOverride().configureOutput({ writeOut: (s) => (help += s), writeErr: (s) => err.push(s) });
    c.commands.forEach(configure);
  };
  configure(program);
  try {
    await program.parseAsync(["node", "membrane", ...args]);
  } catch (e) {
    if ((e as { code?: string }).code !== "commander.helpDisplayed") throw e;
  }
  return { out, err, help };
}

const store = () => `embedded:${join(dir, "store")}`;

describe("membrane kvstore", () => {
  it("every subcommand has --help with an example", async () => {
    for (const sub of ["get", "put", "delete", "list", "watch"]) {
      const { help } = await run(["kvstore", sub, "--help"]);
      expect(help, sub).toMatch(new RegExp(`Usage: membrane kvstore ${sub}`));
      expect(help, sub).toMatch(/--kvstore <spec>/);
      expect(help, sub).toMatch(/Example/);
      expect(help, sub).toMatch(new RegExp(`\\$ membrane kvstore ${sub}`));
    }
  });

  it("put, get, list, delete on the embedded store", async () => {
    expect((await run(["kvstore", "put", "demo/a", "one", "--kvstore", store()])).out[0]).toMatch(/^put demo\/a at revision \d+$/);
    await run(["kvstore", "put", "demo/b", "two", "--kvstore", store()]);
    const file = join(dir, "value.json");
    writeFileSync(file, '{"x":1}');
    await run(["kvstore", "put", "other/c", "--file", file, "--kvstore", store()]);
    expect((await run(["kvstore", "get", "demo/a", "--kvstore", store()])).out).toEqual(["one"]);
    const listed = (await run(["kvstore", "list", "demo/", "--json", "--kvstore", store()])).out.map((l) => JSON.parse(l));
    expect(listed.map((kv) => [kv.key, kv.value])).toEqual([["demo/a", "one"], ["demo/b", "two"]]);
    const table = (await run(["kvstore", "get", "--prefix", "demo/", "--kvstore", store()])).out.join("\n");
    expect(table).toMatch(/^KEY\s+MOD-REV\s+LEASE\s+VALUE/);
    expect(table).toMatch(/demo\/b\s+\d+\s+-\s+two/);
    await expect(run(["kvstore", "put", "--create", "demo/a", "again", "--kvstore", store()])).rejects.toThrow(/already exists/);
    expect((await run(["kvstore", "delete", "--prefix", "demo/", "--kvstore", store()])).out[0]).toMatch(/^deleted 2 keys at revision \d+$/);
    await expect(run(["kvstore", "get", "demo/a", "--kvstore", store()])).rejects.toThrow(/no key "demo\/a"/);
    expect((await run(["kvstore", "get", "other/c", "--json", "--kvstore", store()])).out.map((l) => JSON.parse(l).value)).toEqual(['{"x":1}']);
  });

  it("watch prints changes from a revision, in order", async () => {
    const first = (await run(["kvstore", "put", "w/1", "a", "--json", "--kvstore", store()])).out.map((l) => JSON.parse(l).revision)[0];
    await run(["kvstore", "put", "w/2", "b", "--kvstore", store()]);
    await run(["kvstore", "delete", "w/1", "--kvstore", store()]);
    const abort = new AbortController();
    const lines: string[] = [];
    const watching = run(["kvstore", "watch", "w/", "--rev", String(first), "--json", "--kvstore", store()], abort.signal, lines);
    // The three past events arrive from history; wait for them in the captured output, then stop.
    await waitFor("the three past events from history", () => lines.length >= 3, { intervalMs: 10, detail: () => lines.join(" | ") });
    abort.abort();
    await watching;
    const events = lines.map((l) => JSON.parse(l));
    expect(events.map((e) => [e.type, e.key])).toEqual([["put", "w/1"], ["put", "w/2"], ["delete", "w/1"]]);
    expect(events[0].revision).toBe(first);
  });

  it("refuses bad options with a message naming the option, before touching a store", async () => {
    await expect(run(["kvstore", "list", "--kvstore", "zookeeper:1"])).rejects.toThrow(/--kvstore: "zookeeper:1" is neither/);
    await expect(run(["kvstore", "list", "--kvstore", "etcd:"])).rejects.toThrow(/needs at least one endpoint/);
    await expect(run(["kvstore", "list", "--kvstore", store(), "--kvstore-ca", "/x"])).rejects.toThrow(/--kvstore-ca: applies to etcd only/);
    await expect(run(["kvstore", "list", "--kvstore", "etcd:127.0.0.1:1", "--kvstore-ca", "/nonexistent.pem"])).rejects.toThrow(/--kvstore-ca: \/nonexistent.pem does not exist/);
    await expect(run(["kvstore", "list", "--kvstore", "etcd:127.0.0.1:1", "--kvstore-cert", "/a"])).rejects.toThrow(/give both/);
    await expect(run(["kvstore", "list", "--kvstore", "etcd:127.0.0.1:1", "--kvstore-password", "p"])).rejects.toThrow(/--kvstore-user: required/);
    await expect(run(["kvstore", "list", "--kvstore", store(), "--kvstore-qps", "0"])).rejects.toThrow(/qps must be a positive number.*unlimited/);
    await expect(run(["kvstore", "put", "k", "--kvstore", store()])).rejects.toThrow(/give a <value> or --file/);
    await expect(run(["kvstore", "delete", "--prefix", "", "--kvstore", store()])).rejects.toThrow(/empty prefix/);
    await expect(run(["kvstore", "watch", "--rev", "abc", "--kvstore", store()])).rejects.toThrow(/--rev: expected a revision/);
  });
});
