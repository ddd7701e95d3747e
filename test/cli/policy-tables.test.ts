// `membrane bpf endpoint list` and `membrane bpf policy get`: argument errors, and
// the listings of maps the writer programmed, read back from their pins.
import { readFileSync, rmSync } from "node:fs";
import { afterAll, describe, expect, test } from "vitest";
import { run } from "../../host/cli/main.js";
import { BpfObject } from "../../host/bpf/object.js";
import { bpfObjectPath } from "../../host/tools/build-bpf.js";
import { KernelPolicyTables } from "../../host/kernel/policy-tables.js";
import { PolicyDatapathWriter } from "../../host/policy/datapath-writer.js";
import { ENDPOINTS, IPCACHE, POLICY_A, policyDiff } from "../fixtures/policy-scenarios.js";
import { kernelUnavailable } from "../differential/kernel-available.js";
import { describeIf } from "../support/describe-if.js";

async function cli(...argv: string[]) {
  const out: string[] = [], err: string[] = [];
  const code = await run(argv, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join("\n"), err: err.join("\n"), lines: out.join("\n").split("\n") };
}

describe("policy listings: bad arguments", () => {
  test.each([
    [["bpf", "endpoint"], /expected "bpf endpoint list"/],
    [["bpf", "endpoint", "show"], /expected "bpf endpoint list", got "bpf endpoint show"/],
    [["bpf", "policy", "get"], /expected one endpoint id, got 0 arguments/],
    [["bpf", "policy", "get", "0"], /endpoint id must be 1..65535, got "0"/],
    [["bpf", "policy", "get", "12x"], /endpoint id must be 1..65535, got "12x"/],
    [["bpf", "policy", "list", "1"], /expected "bpf policy get <endpoint>"/],
    [["bpf", "endpoint", "list", "--pin-dir", "/nonexistent/membrane"], /no pinned endpoints4 map there/],
  ])("%j", async (argv, message) => {
    const r = await cli(...argv);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(message);
  });
});

describeIf("policy listings of pinned kernel maps", kernelUnavailable(), () => {
  const pinDir = `/sys/fs/bpf/mbr-policy-cli-${process.pid}`;
  let object: BpfObject | undefined;
  afterAll(() => {
    object?.close();
    rmSync(pinDir, { recursive: true, force: true });
  });

  test("bpf endpoint list and bpf policy get show what the writer wrote", async () => {
    object = BpfObject.load(readFileSync(bpfObjectPath("bpf_test")), { name: "mbr-policy-cli", pinDir });
    const writer = new PolicyDatapathWriter([new KernelPolicyTables(object)]);
    writer.setEndpoints(ENDPOINTS);
    writer.setIpcache(IPCACHE);
    writer.applyPolicy(policyDiff(POLICY_A));

    const eps = await cli("bpf", "endpoint", "list", "--pin-dir", pinDir);
    expect(eps.code).toBe(0);
    expect(eps.lines[0]).toMatch(/^ENDPOINT\s+IDENTITY\s+IPV4\s+IPV6\s+IFINDEX\s+MAC\s+POLICY$/);
    expect(eps.lines[1]).toMatch(/^\s*101\s+1001\s+10\.0\.1\.10\s+fd00::1:10\s+11\s+02:00:00:00:01:0a\s+ingress,egress$/);
    expect(eps.lines[2]).toMatch(/^\s*102\s+1002\s+10\.0\.1\.20\s+fd00::1:20\s+12\s+02:00:00:00:01:14\s+disabled$/);

    const json = await cli("bpf", "endpoint", "list", "--pin-dir", pinDir, "--json");
    expect(json.lines.map((l) => JSON.parse(l))).toEqual(ENDPOINTS.map(({ ipv4, ipv6, ...e }) => ({ ...e, ipv4, ipv6 })));

    const pol = await cli("bpf", "policy", "get", "101", "--pin-dir", pinDir);
    expect(pol.code).toBe(0);
    expect(pol.lines).toHaveLength(POLICY_A.length + 1);
    expect(pol.out).toMatch(/^ingress\s+3002\s+22\s+TCP\s+deny\s+0$/m);
    expect(pol.out).toMatch(/^egress\s+any\s+443\s+TCP\s+allow\s+0$/m);
    expect(pol.out).toMatch(/^egress\s+3000\s+any\s+ICMPv6\s+allow\s+0$/m);
    const rows = (await cli("bpf", "policy", "get", "101", "--pin-dir", pinDir, "--json")).lines.map((l) => JSON.parse(l));
    expect(rows.map(({ endpointId, hits, ...e }) => e).sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))))
      .toEqual([...POLICY_A].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))));

    expect((await cli("bpf", "policy", "get", "102", "--pin-dir", pinDir)).out).toMatch(/no policy entries for endpoint 102/);
  });
});
