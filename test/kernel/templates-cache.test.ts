// The template cache with the real compiler: many concurrent requests for one
// key compile once (in one cache, and across two caches sharing the dir,
// which is the cross-process flock path); a corrupt entry is detected by its
// checksum and rebuilt; a source change is a new key; unused templates are
// removed; an instantiated template loads and carries the endpoint's values.
import { afterAll, expect, test } from "vitest";
import { appendFileSync, cpSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { TemplateCache } from "../../host/kernel/templates/cache.js";
import { resolveOptions } from "../../host/config.js";
import { packageRoot } from "../../host/package-root.js";
import { InvalidInputError } from "../../host/errors.js";
import { CountingCompiler, templateUnavailable, tempTemplatesDir } from "./template-env.js";
import { describeIf } from "../support/describe-if.js";

const EP = { id: 7, identity: 4242, ipv4: "10.0.9.7", ipv6: "fd00::9:7", mac: "02:00:00:00:09:07", ifindex: 77 };

describeIf("template cache", templateUnavailable(), () => {
  const cleanup: string[] = [];
  afterAll(() => cleanup.forEach((d) => rmSync(d, { recursive: true, force: true })));
  const newDir = () => {
    const d = tempTemplatesDir();
    cleanup.push(dirname(d));
    return d;
  };

  test("16 concurrent requests in one cache and 16 in another on the same dir: one compile", { timeout: 120_000 }, async () => {
    const dir = newDir();
    const a = new CountingCompiler(), b = new CountingCompiler();
    const one = new TemplateCache({ dir, compiler: a }), two = new TemplateCache({ dir, compiler: b });
    const got = await Promise.all([...Array(16)].flatMap(() => [one.get("bpf_lxc"), two.get("bpf_lxc")]));
    expect(a.runs + b.runs).toBe(1);
    expect(new Set(got.map((t) => t.key)).size).toBe(1);
    expect(one.stats.compiles + two.stats.compiles).toBe(1);
    expect(one.stats.hits + two.stats.hits).toBe(1); // the loser found it built after the lock
    // The layout on disk: dir 0700, object and meta 0600, meta names the key and checksum.
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    const key = got[0]!.key;
    expect(statSync(join(dir, key)).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, key, "bpf_lxc.o")).mode & 0o777).toBe(0o600);
    const meta = JSON.parse(readFileSync(join(dir, key, "meta.json"), "utf8"));
    expect(meta.key).toBe(key);
    expect(meta.defines).toContain("-DENDPOINT_POLICY_ENFORCE=3");
    // A third cache (a restarted agent) finds it without compiling.
    const c = new CountingCompiler();
    const again = await new TemplateCache({ dir, compiler: c }).get("bpf_lxc");
    expect(c.runs).toBe(0);
    expect(again.key).toBe(key);
    // A different shape is a different key and a compile of its own.
    const shaped = await one.get("bpf_lxc", { nat: false });
    expect(shaped.key).not.toBe(key);
    expect(a.runs + b.runs).toBe(2);
  });

  test("a corrupt object or meta.json is detected and rebuilt", { timeout: 120_000 }, async () => {
    const dir = newDir();
    const first = await new TemplateCache({ dir }).get("bpf_lxc");
    const object = join(dir, first.key, "bpf_lxc.o");
    const bytes = readFileSync(object);
    bytes[bytes.length >> 1] ^= 0xff;
    writeFileSync(object, bytes);

    const compiler = new CountingCompiler();
    const cache = new TemplateCache({ dir, compiler });
    expect(cache.list()[0]!.status).toMatch(/checksum/);
    const rebuilt = await cache.get("bpf_lxc");
    expect(compiler.runs).toBe(1);
    expect(cache.stats.rebuilt).toBe(1);
    expect(Buffer.compare(Buffer.from(rebuilt.elf), Buffer.from(first.elf))).toBe(0);
    expect(cache.list()[0]!.status).toBe("ok");

    writeFileSync(join(dir, first.key, "meta.json"), "{ not json");
    const c2 = new CountingCompiler();
    const cache2 = new TemplateCache({ dir, compiler: c2 });
    expect(cache2.find(first.key.slice(0, 8)).status).toMatch(/not JSON/);
    await cache2.get("bpf_lxc");
    expect(c2.runs).toBe(1);
    expect(cache2.stats.rebuilt).toBe(1);

    expect(() => rebuilt.instantiate({ ...EP, id: 0 }, resolveOptions({}))).toThrow(/endpoint 0: id/);
    expect(() => rebuilt.instantiate({ ...EP, ipv4: "fd00::1" }, resolveOptions({}))).toThrow(/ipv4/);
    // An instance from the rebuilt entry loads and holds the endpoint's values in .rodata.
    const obj = rebuilt.instantiate(EP, resolveOptions({}));
    try {
      const rodata = [...obj.maps.values()].find((m) => m.internal && m.name.endsWith(".rodata"))!;
      const value = rodata.lookup(new Uint8Array(4))!;
      for (const p of rebuilt.patches(EP)) expect(hex(value.subarray(p.offset, p.offset + p.bytes.length))).toBe(hex(p.bytes));
    } finally {
      obj.close();
    }
  });

  test("a source change is a new key; unused templates are removed, used ones kept", { timeout: 120_000 }, async () => {
    const dir = newDir();
    const src = join(dirname(dir), "bpf");
    cpSync(join(packageRoot(), "bpf"), src, { recursive: true });
    const compiler = new CountingCompiler();
    const cache = new TemplateCache({ dir, sourceDir: src, compiler });
    const before = await cache.get("bpf_lxc");
    expect(cache.keyOf("bpf_lxc").key).toBe(before.key);
    appendFileSync(join(src, "lib/policy.h"), "\n/* a comment is a change too */\n");
    const key2 = cache.keyOf("bpf_lxc").key;
    expect(key2).not.toBe(before.key);
    const after = await cache.get("bpf_lxc");
    expect(after.key).toBe(key2);
    expect(compiler.runs).toBe(2);
    expect(after.meta.sources.find((s) => s.path === "lib/policy.h")!.sha256).not.toBe(before.meta.sources.find((s) => s.path === "lib/policy.h")!.sha256);

    cache.recordEndpoint(before.key, EP);
    expect(cache.find(before.key).endpoints.map((e) => e.id)).toEqual([7]);
    expect(cache.removeUnused()).toEqual([key2]); // key2: no endpoint
    expect(existsSync(join(dir, before.key))).toBe(true);
    cache.recordEndpoint(before.key, { ...EP, id: 8 });
    cache.forgetEndpoint(7);
    cache.forgetEndpoint(8);
    expect(cache.removeUnused()).toEqual([before.key]);
    expect(cache.list()).toEqual([]);
  });

  test("bad input names what is wrong and changes nothing", async () => {
    const dir = newDir();
    const cache = new TemplateCache({ dir });
    await expect(cache.get("bpf_nope")).rejects.toThrow(/no program bpf_nope\.c .*bpf_lxc/);
    await expect(cache.get("bpf_lxc", { nat: "yes" } as never)).rejects.toThrow(/nat: expected true or false/);
    await expect(cache.get("bpf_lxc", { natt: true } as never)).rejects.toThrow(/unknown key natt/);
    expect(() => cache.find("xyz")).toThrow(InvalidInputError);
    expect(() => new TemplateCache({ dir: "relative/dir" })).toThrow(/absolute/);
    expect(existsSync(dir)).toBe(false);
  });
});

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
