/**
 * The CLI under output and input a careless user gives it: a capture whose
 * conntrack table is larger than any argument list (issue 19 #12), a reader
 * that goes away (`| head`), `--out` into a missing directory, a bad flag
 * value, a status file of another shape. Each ends with a message and an exit
 * code, never a stack trace.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { run } from "../../host/cli/main.js";
import { statusPath } from "../../host/agent/status-file.js";
import { ethernet, packet4 } from "../../host/packet/build.js";
import { LinkType, PcapWriter } from "../../host/pcap/index.js";

const ROOT = join(import.meta.dirname, "../..");
const MAIN = join(ROOT, "dist/host/cli/main.js");
const SAMPLE = join(ROOT, "examples/sample.pcap");
const dir = mkdtempSync(join(tmpdir(), "membrane-cli-robust-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const FLOWS = 150_000;
const big = join(dir, "150k-flows.pcap");

/** FLOWS UDP datagrams from one pod, each its own flow (destination address and port vary), over 3 seconds. */
function writeManyFlows(path: string): void {
  const writer = new PcapWriter(LinkType.Ethernet);
  const payload = new Uint8Array(8);
  for (let i = 0; i < FLOWS; i++) {
    const dst = `10.${64 + (i >> 16)}.${(i >> 8) & 0xff}.${i & 0xff}`;
    const frame = ethernet({ src: "02:00:0a:00:01:0a", dst: "02:00:0a:00:01:01" },
      packet4({ src: "10.0.1.10", dst }).udp({ sport: 40000, dport: 1000 + (i % 50000), payload }));
    writer.add(1_700_000_000n * 1_000_000_000n + BigInt(Math.floor((i / FLOWS) * 3e9)), frame);
  }
  writeFileSync(path, writer.toBytes());
}

async function cli(...argv: string[]) {
  const out: string[] = [], err: string[] = [];
  const code = await run(argv, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out, err: err.join("\n") };
}

/** Runs the built CLI with its stdout's reader closed before the child writes a byte. */
function withClosedStdout(...args: string[]): Promise<{ code: number | null; signal: string | null; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, MEMBRANE_DEBUG: "" } });
    child.stdout.destroy();
    let err = "";
    child.stderr.on("data", (d) => { err += d; });
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code, signal, err }));
  });
}

beforeAll(() => writeManyFlows(big));

describe("membrane replay of a capture with more conntrack entries than an argument list holds", () => {
  test(`${FLOWS} flows: the table and the counters print, exit 0`, async () => {
    const r = await cli("replay", big, "--summary", "--gc", "off");
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    const heading = r.out.findIndex((l) => l.startsWith("Conntrack ("));
    expect(r.out[heading]).toMatch(new RegExp(`^Conntrack \\(${FLOWS} entries, clock \\d+\\):$`));
    // Header plus one line per entry, each an any4 UDP flow from the pod.
    expect(r.out[heading + 1]).toMatch(/^TABLE\s+BY\s+PROTO\s+FLOW/);
    const rows = r.out.slice(heading + 2, heading + 2 + FLOWS);
    expect(rows.every((l) => /^any4\s+OUT\s+UDP\s+10\.0\.1\.10:40000 -> 10\./.test(l))).toBe(true);
    expect(r.out.at(-1)).toBe(`${FLOWS} packets: ${FLOWS} passed, 0 dropped`);
  }, 120_000);

  test("the same as JSON lines: one conntrack record per flow", async () => {
    const r = await cli("replay", big, "--summary", "--gc", "off", "--json");
    expect(r.code).toBe(0);
    expect(r.out.filter((l) => l.startsWith('{"type":"conntrack"')).length).toBe(FLOWS);
  }, 120_000);
});

describe("a reader that goes away (`membrane ... | head`)", () => {
  test("replay ends quietly with exit 0", async () => {
    const r = await withClosedStdout("replay", big);
    expect(r.err).toBe("");
    expect(r.signal).toBeNull();
    expect(r.code).toBe(0);
  }, 120_000);

  test("status ends quietly with exit 0", async () => {
    const state = join(dir, "state-live");
    mkdirSync(state);
    writeFileSync(statusPath(state), JSON.stringify(liveStatus()));
    const r = await withClosedStdout("status", "--state-dir", state);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
  });
});

describe("bad input is refused before any work, with a message", () => {
  test("--out into a missing directory: refused before the replay runs", async () => {
    const out = join(dir, "no-such-dir", "passed.pcap");
    const r = await cli("replay", SAMPLE, "--out", out);
    expect(r.code).toBe(2);
    expect(r.err).toBe(`membrane: --out ${out}: directory ${join(dir, "no-such-dir")} does not exist`);
    expect(r.out).toEqual([]); // not one packet line: nothing ran
    expect(existsSync(out)).toBe(false);
  });

  test("--out naming a directory is refused too", async () => {
    const r = await cli("replay", SAMPLE, "--out", dir);
    expect(r.code).toBe(2);
    expect(r.err).toContain("is a directory");
    expect(r.out).toEqual([]);
  });

  test("--ifindex abc says what it expected", async () => {
    const state = join(dir, "ifindex.json");
    writeFileSync(state, "{}");
    const r = await cli("endpoint", "add", "7", "--labels", "app=x", "--ifindex", "abc", "--config", state);
    expect(r.code).toBe(2);
    expect(r.err).toBe('membrane: --ifindex: expected 1..2147483647 (an interface index), got "abc"');
    expect(r.err).not.toContain("null");
  });

  test.each([
    ["a list", [], "(top level): expected an object"],
    ["no pid", { ...liveStatus(), pid: "123" }, "pid: expected a number"],
    ["stats missing", { ...liveStatus(), stats: undefined }, "stats: expected an object"],
    ["drops not a list", { ...liveStatus(), counters: { drops: {} } }, "counters.drops: expected a list"],
    ["a flow that is not an object", { ...liveStatus(), flows: [3] }, "flows[0]: expected an object"],
  ])("a status file of the wrong shape (%s) is refused naming the file and key", async (_name, content, message) => {
    const state = join(dir, `state-${_name.replace(/\W+/g, "-")}`);
    mkdirSync(state);
    writeFileSync(statusPath(state), JSON.stringify(content));
    const r = await cli("status", "--state-dir", state);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`status file ${statusPath(state)}: ${message}`);
    expect(r.err).not.toMatch(/\n\s+at /);
  });

  test("an unexpected error is one line and the hint, the stack only with MEMBRANE_DEBUG=1", async () => {
    const err: string[] = [];
    const broken = { out: () => { throw new TypeError("the terminal fell over\nsecond line"); }, err: (l: string) => err.push(l) };
    const saved = process.env.MEMBRANE_DEBUG;
    delete process.env.MEMBRANE_DEBUG;
    try {
      expect(await run(["replay", SAMPLE], broken)).toBe(1);
      expect(err).toEqual(["membrane: unexpected error: the terminal fell over", "(run with MEMBRANE_DEBUG=1 for the stack)"]);
      err.length = 0;
      process.env.MEMBRANE_DEBUG = "1";
      expect(await run(["replay", SAMPLE], broken)).toBe(1);
      expect(err[1]).toMatch(/^TypeError: the terminal fell over\n[\s\S]*\n\s+at /);
    } finally {
      if (saved === undefined) delete process.env.MEMBRANE_DEBUG; else process.env.MEMBRANE_DEBUG = saved;
    }
  });
});

function liveStatus() {
  return {
    pid: process.pid, datapath: "tun", device: "mbr7", mtu: 1500, routes: ["10.7.0.0/16"], startedAt: "t0", updatedAt: "t1",
    restoredEntries: 0, entries: 1, stats: { batches: 1, reads: 1, writes: 1, packetsIn: 1, bytesIn: 100, packetsOut: 1, bytesOut: 100, dropped: 0, writeErrors: 0, gcRuns: 0, wirePacketsIn: 1, offloadUnwritable: 0 },
    counters: { forwarded: { egress: { packets: 1, bytes: 100 }, ingress: { packets: 0, bytes: 0 } }, drops: [], tables: {} },
    flows: [{ table: "any4", flow: "10.7.0.1:1 -> 10.7.0.2:53", proto: "UDP", txPackets: 1, rxPackets: 0, state: "", expiresIn: 60 }],
  };
}
