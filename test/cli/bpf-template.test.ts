// `membrane bpf template list|get` (alias `bpf sha`) over a real templates dir:
// a compiled template with one recorded endpoint, listed as a table and as
// JSON, fetched by a hash prefix; bad hashes are refused with a clear message.
import { afterAll, beforeAll, expect, test } from "vitest";
import { rmSync } from "node:fs";
import { dirname } from "node:path";
import { run } from "../../host/cli/main.js";
import { TemplateCache } from "../../host/kernel/templates/cache.js";
import { templateUnavailable, tempTemplatesDir } from "../kernel/template-env.js";
import { describeIf } from "../support/describe-if.js";

async function cli(args: string[]): Promise<string[]> {
  const lines: string[] = [];
  const code = await run(["bpf", ...args], { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) });
  if (code !== 0) lines.push(`(exit ${code})`);
  return lines;
}

describeIf("membrane bpf template", templateUnavailable(), () => {
  const dir = templateUnavailable() !== undefined ? "" : tempTemplatesDir();
  let key = "";
  beforeAll(async () => {
    const cache = new TemplateCache({ dir });
    const t = await cache.get("bpf_lxc", { nat: false, enforceEgress: false });
    key = t.key;
    cache.recordEndpoint(key, { id: 42, identity: 1234, ipv4: "10.0.0.42", mac: "02:00:00:00:00:2a", ifindex: 9 });
  }, 60_000);
  afterAll(() => dir && rmSync(dirname(dir), { recursive: true, force: true }));

  test("list and its alias sha list: hash, program, configuration, endpoints", async () => {
    for (const args of [["template", "list"], ["sha", "list"]]) {
      const out = (await cli([...args, "--templates-dir", dir])).join("\n");
      expect(out).toMatch(/^HASH\s+PROGRAM\s+CONFIGURATION/);
      expect(out).toContain(key.slice(0, 12));
      expect(out).toMatch(/bpf_lxc\s+lb policy enforce=ingress/);
      expect(out).toMatch(/ok\s+42$/m);
    }
    const json = (await cli(["template", "list", "--json", "--templates-dir", dir])).map((l) => JSON.parse(l));
    expect(json).toHaveLength(1);
    expect(json[0].key).toBe(key);
    expect(json[0].meta.shape).toEqual({ lb: true, nat: false, policy: true, enforceIngress: true, enforceEgress: false });
    expect(json[0].endpoints.map((e: { id: number }) => e.id)).toEqual([42]);
  });

  test("get <prefix>: sources, defines, endpoints", async () => {
    const out = (await cli(["template", "get", key.slice(0, 6), "--templates-dir", dir])).join("\n");
    expect(out).toContain(`template ${key}`);
    expect(out).toContain("-DENABLE_NAT=0");
    expect(out).toContain("-DENDPOINT_POLICY_ENFORCE=1");
    expect(out).toMatch(/[0-9a-f]{12}  lib\/endpoint\.h/);
    expect(out).toMatch(/42\s+1234\s+10\.0\.0\.42/);
    const json = JSON.parse((await cli(["sha", "get", key, "--json", "--templates-dir", dir]))[0]!);
    expect(json.status).toBe("ok");
  });

  test("bad or unknown hashes are refused by name", async () => {
    // Refused with exit 2 and the message, no stack (the CLI's error handler).
    const bad = (await cli(["template", "get", "zz", "--templates-dir", dir])).join("\n");
    expect(bad).toMatch(/4 to 64 lowercase hex digits, got "zz"[\s\S]*\(exit 2\)$/);
    const unknown = (await cli(["template", "get", "0000000", "--templates-dir", dir])).join("\n");
    expect(unknown).toMatch(/no template 0000000 in[\s\S]*\(exit 1\)$/); // not found: a failure, not bad input
    const help = (await cli(["template", "get", "--help"])).join("\n");
    expect(help).toContain("Usage: membrane bpf template get <hash> [options]");
    expect(help).toContain("membrane bpf sha get 3fa2c1 --json");
  });
});
