// `membrane replay` end to end through the CLI entry point (no subprocess).
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { cli } from "../support/run-cli.js";
import { readCapture } from "../../host/pcap/index.js";
import { packageRoot } from "../../host/package-root.js";
import { buildSampleCapture } from "../fixtures/sample-capture.js";
import { kernelUnavailable } from "../differential/kernel-available.js";
import { describeIf } from "../support/describe-if.js";

const SAMPLE = join(packageRoot(), "examples/sample.pcap");
const dir = mkdtempSync(join(tmpdir(), "membrane-replay-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("membrane replay", () => {
  test("examples/sample.pcap is what the fixture builds", () => {
    const built = buildSampleCapture();
    if (process.env.UPDATE_SAMPLE) writeFileSync(SAMPLE, built);
    expect(existsSync(SAMPLE)).toBe(true);
    expect(Buffer.from(readFileSync(SAMPLE)).equals(Buffer.from(built))).toBe(true);
  });

  test("prints a line per packet, the conntrack table and the counters", async () => {
    const r = await cli("replay", SAMPLE, "--gc", "off");
    expect(r.code).toBe(0);
    const rows = r.lines.filter((l) => /^\s+\d+\s/.test(l));
    expect(rows).toHaveLength(readCapture(readFileSync(SAMPLE)).packets.length);
    expect(rows[0]).toMatch(/ARP.*egress\s+none\s+pass/);
    expect(rows[1]).toMatch(/10\.0\.1\.10:51000 -> 10\.96\.0\.10:53 UDP.*egress\s+new\s+pass/);
    expect(rows[2]).toMatch(/ingress\s+reply\s+pass/);
    expect(r.out).toMatch(/ICMP time-exceeded.*ingress\s+related\s+pass/);
    expect(r.out).toMatch(/truncated.*egress\s+none\s+drop\s+DROP_INVALID$/m);
    expect(r.out).toMatch(/tcp4\s+OUT\s+TCP\s+10\.0\.1\.10:43210 -> 93\.184\.216\.34:443\s+6\s+757\s+3\s+1520\s+SFPA\/SFPA\s+tx-closing,rx-closing,seen-non-syn\s+10s/);
    expect(r.out).toContain("DROP_INVALID  egress        1     44");
    expect(r.out).toMatch(/ICMP\s+10\.0\.1\.10 -> 93\.184\.216\.34 id=29/);
    expect(r.out).toContain("24 packets: 23 passed, 1 dropped");
  });

  test("--json prints one JSON object per line", async () => {
    const r = await cli("replay", SAMPLE, "--json");
    expect(r.code).toBe(0);
    const objects = r.lines.map((l) => JSON.parse(l));
    const packets = objects.filter((o) => o.type === "packet");
    expect(packets[1]).toMatchObject({ index: 2, verdict: "pass", ct: "new", direction: "egress", ctTable: "any4" });
    const dropped = packets.filter((p) => p.verdict === "drop");
    expect(dropped).toHaveLength(1);
    expect(dropped[0]).toMatchObject({ index: 21, dropReason: "DROP_INVALID", dropCode: 134 });
    const ct = objects.filter((o) => o.type === "conntrack");
    expect(ct.map((e) => e.table).sort()).toEqual(["any4", "any4", "any4", "any4", "any6", "tcp4", "tcp6"].sort());
    expect(objects.at(-1)).toMatchObject({ type: "summary", dropped: 1 });
  });

  test("--out writes the packets that pass", async () => {
    const outFile = join(dir, "passed.pcap");
    const r = await cli("replay", SAMPLE, "--summary", "--out", outFile);
    expect(r.code).toBe(0);
    const input = readCapture(readFileSync(SAMPLE)).packets;
    const written = readCapture(readFileSync(outFile)).packets;
    expect(written).toHaveLength(input.length - 1);
    expect(written.map((p) => Buffer.from(p.data).toString("hex"))).toEqual(
      input.filter((p) => p.data.length !== 44).map((p) => Buffer.from(p.data).toString("hex")));
    expect(written[5].timestampNs).toBe(input[5].timestampNs);
  });

  test("--config applies a state file", async () => {
    const cfg = join(dir, "state.json");
    writeFileSync(cfg, JSON.stringify({ conntrack: { tcpEntries: 1, otherEntries: 1, whenFull: "drop" } }));
    const r = await cli("replay", SAMPLE, "--summary", "--json", "--config", cfg);
    expect(r.code).toBe(0);
    const counters = r.lines.map((l) => JSON.parse(l)).find((o) => o.type === "counters");
    expect(counters.drops.find((d: { reason: string }) => d.reason === "DROP_CT_CREATE_FAILED").packets).toBeGreaterThan(0);
  });

  test.each([
    [["replay"], "expected one capture file, got 0"],
    [["replay", "/nonexistent.pcap"], "read capture /nonexistent.pcap"],
    [["replay", SAMPLE, "--direction", "up"], "--direction: expected auto, egress or ingress"],
    [["replay", SAMPLE, "--bogus"], "Unknown option '--bogus'"],
    [["frobnicate"], 'unknown command "frobnicate"'],
  ])("bad input %j exits 2 with a clear message", async (argv, message) => {
    const r = await cli(...argv);
    expect(r.code).toBe(2);
    expect(r.err).toContain(message);
  });

  test("a truncated capture names the record and byte offset", async () => {
    const cut = join(dir, "cut.pcap");
    writeFileSync(cut, readFileSync(SAMPLE).subarray(0, 200));
    const r = await cli("replay", cut);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/capture truncated: record \d+ at byte \d+/);
  });

  test("a bad state file names the key and changes nothing", async () => {
    const cfg = join(dir, "bad.json");
    writeFileSync(cfg, JSON.stringify({ conntrack: { timeouts: { tcp: "long" } } }));
    const r = await cli("replay", SAMPLE, "--config", cfg);
    expect(r.code).toBe(2);
    expect(r.err).toContain("conntrack.timeouts.tcp: expected an integer");
    expect(r.out).toBe("");
    writeFileSync(cfg, "{ not json");
    expect((await cli("replay", SAMPLE, "--config", cfg)).err).toContain("parse state file");
  });
});

describeIf("membrane replay --engine bpf", kernelUnavailable(), () => {
  test("prints the same as the Wasm engine on the sample capture", async () => {
    const wasm = await cli("replay", SAMPLE, "--gc", "off");
    const bpf = await cli("replay", SAMPLE, "--gc", "off", "--engine", "bpf");
    expect(bpf.code).toBe(0);
    expect(bpf.out).toBe(wasm.out);
  });

  test("names frames the kernel cannot run instead of inventing a verdict", async () => {
    const { writeCapture, LinkType } = await import("../../host/pcap/index.js");
    const file = join(dir, "runt.pcap");
    writeFileSync(file, writeCapture(LinkType.Ethernet, [{ timestampNs: 1_000_000_000n, data: new Uint8Array(10) }]));
    const r = await cli("replay", file, "--engine", "bpf");
    expect(r.code).toBe(0);
    expect(r.out).toContain("not run: kernel test run: a 10-byte frame is shorter than an Ethernet header");
    expect(r.out).toContain("1 packets: 0 passed, 0 dropped, 1 not run by the bpf engine");
  });

  test("an empty raw-IP record: both engines drop it as an unknown L3 (no version nibble, no protocol)", async () => {
    const { writeCapture, LinkType } = await import("../../host/pcap/index.js");
    const file = join(dir, "empty-raw.pcap");
    writeFileSync(file, writeCapture(LinkType.Raw, [{ timestampNs: 1_000_000_000n, data: new Uint8Array(0) }]));
    const wasm = await cli("replay", file, "--json");
    const bpf = await cli("replay", file, "--json", "--engine", "bpf");
    const packet = (r: typeof wasm) => JSON.parse(r.lines.find((l) => l.includes('"type":"packet"'))!);
    expect(packet(wasm)).toMatchObject({ verdict: "drop", dropReason: "DROP_UNKNOWN_L3" });
    expect(packet(bpf)).toEqual(packet(wasm));
  });
});

describe("membrane bpf ct list", () => {
  test("an unknown table or a missing pin is a clear error", async () => {
    expect((await cli("bpf", "ct", "list", "--table", "tcp5")).err).toContain("--table: expected one of tcp4, any4, tcp6, any6");
    const r = await cli("bpf", "ct", "list", "--pin-dir", join(dir, "nothing"));
    expect(r.code).toBe(2);
    expect(r.err).toContain("no pinned conntrack map there");
    expect((await cli("bpf", "frob", "list")).err).toContain('expected "bpf ct list"');
  });
});
