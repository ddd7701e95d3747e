// The state file's endpoints and policies reach the replay's datapath: `endpoint add`, `policy import` (YAML),
// then `membrane replay` allows and drops ("policy denied") as the rules say, the same in Wasm and the kernel.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { cli } from "../support/run-cli.js";
import { LinkType, writeCapture } from "../../host/pcap/index.js";
import { ethernet, packet4, packet6 } from "../../host/packet/build.js";
import { kernelUnavailable } from "../differential/kernel-available.js";
import { testIf } from "../support/describe-if.js";
import { WEB_EGRESS_POLICY } from "../fixtures/web-policy.js";

const dir = mkdtempSync(join(tmpdir(), "membrane-replay-policy-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const WEB4 = "10.0.1.10", DB4 = "10.0.1.20", WEB6 = "fd00:1::a", DB6 = "fd00:1::14";
const POLICY_YAML = `# web may talk to db on 5432 and to one outside /24 on 443; db takes 5432 from web only
${WEB_EGRESS_POLICY}---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: 5432}]
`;

const frame = (p: Uint8Array) => ethernet({ src: "02:00:00:00:00:01", dst: "02:00:00:00:00:02" }, p);
const syn = (src: string, dst: string, sport: number, dport: number) =>
  frame((src.includes(":") ? packet6({ src, dst }) : packet4({ src, dst })).tcp({ sport, dport, flags: { syn: true } }));

function capture(file: string, frames: Uint8Array[]): string {
  const path = join(dir, file);
  const epoch = 1_763_900_000n * 1_000_000_000n;
  writeFileSync(path, writeCapture(LinkType.Ethernet, frames.map((data, i) => ({ timestampNs: epoch + BigInt(i) * 1_000_000n, data }))));
  return path;
}

/** Verdict and reason of each packet line. */
const verdicts = (lines: string[]) => lines.filter((l) => /^\s+\d+\s/.test(l)).map((l) => l.replace(/^.*\s(pass|drop)(\s+(\S+))?$/, "$1 $3").trim());

const state = join(dir, "state.json");
// egress of the pods (auto: new flows are the sender's egress)
const egress = capture("egress.pcap", [
  syn(WEB4, DB4, 40000, 5432), // allowed: db on 5432
  frame(packet4({ src: DB4, dst: WEB4 }).tcp({ sport: 5432, dport: 40000, flags: { syn: true, ack: true } })), // reply
  syn(WEB4, DB4, 40001, 22), // denied: wrong port
  syn(WEB4, "93.184.216.34", 40002, 443), // allowed: the /24
  syn(WEB4, "93.184.217.34", 40003, 443), // denied: outside it (world)
  syn(WEB6, DB6, 40004, 5432), // allowed: db's own /128 is in the ipcache with db's identity
  frame(packet4({ src: DB4, dst: "8.8.8.8" }).udp({ sport: 53000, dport: 53, payload: new Uint8Array(8) })), // db enforces no egress
]);
// ingress of the pods
const ingress = capture("ingress.pcap", [
  syn(WEB4, DB4, 41000, 5432), // allowed: from web (its /32 resolves to web's identity)
  syn("192.0.2.7", DB4, 41001, 5432), // denied: world
  syn(WEB6, DB6, 41002, 5432), // allowed
  syn(DB4, WEB4, 41003, 80), // web enforces no ingress
]);
const EGRESS = ["pass", "pass", "drop DROP_POLICY", "pass", "drop DROP_POLICY", "pass", "pass"];
const INGRESS = ["pass", "drop DROP_POLICY", "pass", "pass"];

beforeAll(async () => {
  writeFileSync(state, JSON.stringify({ conntrack: { tcpEntries: 1024 }, policy: { endpoints: 16, ipcache: 64, entries: 256 } }));
  const policyFile = join(dir, "policy.yaml");
  writeFileSync(policyFile, POLICY_YAML);
  for (const args of [
    ["endpoint", "add", "1", "--labels", "app=web", "--ipv4", WEB4, "--ipv6", WEB6],
    ["endpoint", "add", "2", "--labels", "app=db", "--ipv4", DB4, "--ipv6", DB6],
    ["policy", "import", policyFile],
  ]) {
    const r = await cli(...args, "--config", state);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
  }
});

describe("membrane replay with endpoints and policies in the state file", () => {
  test("the engine writes the endpoints' own addresses into the ipcache (/32, /128)", () => {
    const saved = JSON.parse(readFileSync(state, "utf8"));
    expect(saved.ipcache).toEqual(expect.arrayContaining([
      { cidr: `${WEB4}/32`, identity: saved.endpoints[0].identity }, { cidr: `${WEB6}/128`, identity: saved.endpoints[0].identity },
      { cidr: `${DB4}/32`, identity: saved.endpoints[1].identity }, { cidr: `${DB6}/128`, identity: saved.endpoints[1].identity },
    ]));
    // the datapath sizes under "policy" survive the engine's writes
    expect(saved.policy).toEqual({ endpoints: 16, ipcache: 64, entries: 256 });
  });

  test("Wasm: allowed and policy-denied packets as the rules say, per direction", async () => {
    const e = await cli("replay", egress, "--gc", "off", "--config", state);
    expect(e.err).toBe("");
    expect(verdicts(e.lines)).toEqual(EGRESS);
    expect(e.out).toMatch(/^DROP_POLICY\s+egress\s+2\s+108\s+Policy denied$/m);
    const i = await cli("replay", ingress, "--gc", "off", "--direction", "ingress", "--config", state);
    expect(verdicts(i.lines)).toEqual(INGRESS);
  });

  test("without the policy the same capture passes entirely", async () => {
    const bare = join(dir, "bare.json");
    writeFileSync(bare, JSON.stringify({ conntrack: { tcpEntries: 1024 } }));
    expect(verdicts((await cli("replay", egress, "--gc", "off", "--config", bare)).lines)).toEqual(EGRESS.map(() => "pass"));
  });

  test("a state file whose tables do not fit the datapath is refused before any packet", async () => {
    const small = join(dir, "small.json");
    writeFileSync(small, JSON.stringify({ ...JSON.parse(readFileSync(state, "utf8")), policy: { entries: 1 } }));
    const r = await cli("replay", egress, "--config", small);
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/policy entries: \d+ do not fit the wasm datapath's policy table \(1 entries; raise policy\.entries\)/);
    expect(r.lines.filter((l) => /^\s+\d+\s/.test(l))).toEqual([]);
  });

  testIf("the kernel program (--engine bpf) gives the same output", kernelUnavailable(), async () => {
    for (const [file, direction, expected] of [[egress, "auto", EGRESS], [ingress, "ingress", INGRESS]] as const) {
      const wasm = await cli("replay", file, "--gc", "off", "--direction", direction, "--config", state);
      const bpf = await cli("replay", file, "--gc", "off", "--direction", direction, "--config", state, "--engine", "bpf");
      expect(bpf.err).toBe("");
      expect(verdicts(bpf.lines)).toEqual(expected);
      expect(bpf.out).toBe(wasm.out);
    }
  });
});
