// `membrane capture` against a running agent (in a namespace of this test's
// own): the pcapng file opens in tshark with the packets the forwarder saw,
// before the datapath and after it, the policy drop marked with its reason;
// the filter keeps other traffic out. The writer alone: tshark reads what
// pcapngHeader/pcapngPacket produce.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NetnsLab } from "../../host/sys/netns/lab.js";
import { LinkType } from "../../host/pcap/link-type.js";
import { pcapngHeader, pcapngPacket } from "../../host/pcap/pcapng-write.js";
import { packet4 } from "../../host/packet/build.js";
import { agentUnavailable, CLI } from "../agent/agent-lab.js";
import { describeIf } from "../support/describe-if.js";
import { waitFor } from "../support/wait-for.js";
import { policyLab, policyStateFile, sendUdp, startPolicyAgent } from "../monitor/policy-lab.js";

const tsharkMissing = spawnSync("tshark", ["--version"]).error ? "tshark is not installed (Debian: tshark)" : undefined;
const dir = mkdtempSync(join(tmpdir(), "membrane-ob-capture-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** tshark's fields of every packet in `file`, tab-separated per packet. */
function tshark(file: string, fields: string[]): string[][] {
  const r = spawnSync("tshark", ["-r", file, "-T", "fields", ...fields.flatMap((f) => ["-e", f])], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`tshark -r ${file}: ${r.stderr}`);
  return r.stdout.trim().split("\n").filter((l) => l !== "").map((l) => l.split("\t"));
}

describeIf("the pcapng writer", tsharkMissing, () => {
  it("writes interfaces with names and packets with comments that tshark reads", () => {
    const file = join(dir, "writer.pcapng");
    const p = packet4({ src: "10.0.0.1", dst: "10.0.0.2" }).udp({ sport: 1234, dport: 53, payload: new Uint8Array(5) });
    writeFileSync(file, Buffer.concat([
      pcapngHeader([{ name: "before-datapath", linkType: LinkType.Raw }, { name: "after-datapath", linkType: LinkType.Raw }]),
      pcapngPacket(0, 1_764_900_000_123_456_789n, p),
      pcapngPacket(1, 1_764_900_000_123_456_790n, p, p.length, "drop DROP_POLICY"),
    ]));
    expect(tshark(file, ["frame.interface_name", "ip.src", "udp.dstport", "frame.comment", "frame.time_epoch"])).toEqual([
      ["before-datapath", "10.0.0.1", "53", "", "1764900000.123456789"],
      ["after-datapath", "10.0.0.1", "53", "drop DROP_POLICY", "1764900000.123456790"],
    ]);
  });
});

describeIf("membrane capture on a running agent", agentUnavailable() ?? tsharkMissing, () => {
  let lab: NetnsLab;
  let ns: string;
  let socket: string;

  beforeAll(async () => {
    ({ lab, ns } = await policyLab(`ob-cap${process.pid}`));
    await startPolicyAgent(lab, ns, dir, await policyStateFile(dir));
    socket = join(dir, "state", "agent.sock");
  }, 60_000);

  afterAll(async () => {
    await lab?.teardown();
  });

  it("before and after the datapath, the drop marked with its reason, only what the filter takes", async () => {
    const file = join(dir, "agent.pcapng");
    const child = spawn(process.execPath, [CLI, "capture", "-w", file, "--address", "10.92.0.2", "--count", "6", "--socket", socket], { stdio: ["ignore", "pipe", "pipe"] });
    let err = "";
    let out = "";
    child.stderr.setEncoding("utf8").on("data", (c: string) => (err += c));
    child.stdout.setEncoding("utf8").on("data", (c: string) => (out += c));
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    try {
      await waitFor("the capture running", () => err.includes("writing to"), { detail: () => err });
      sendUdp(ns, 7000, 1, 42000); // allowed
      sendUdp(ns, 7001, 1, 42001); // denied by the policy
      sendUdp(ns, 7000, 1, 42002); // allowed
      expect(await exited).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill("SIGTERM");
    }
    expect(out).toContain(`membrane capture: 6 packets written to ${file}`);
    const rows = tshark(file, ["frame.interface_name", "ip.src", "ip.dst", "udp.srcport", "udp.dstport", "frame.comment"]);
    const sorted = (stage: string) => rows.filter((r) => r[0] === stage).map((r) => r.slice(1)).sort((a, b) => a[2]!.localeCompare(b[2]!));
    expect(sorted("before-datapath")).toEqual([
      ["10.91.0.1", "10.92.0.2", "42000", "7000", ""],
      ["10.91.0.1", "10.92.0.2", "42001", "7001", ""],
      ["10.91.0.1", "10.92.0.2", "42002", "7000", ""],
    ]);
    expect(sorted("after-datapath")).toEqual([
      ["10.91.0.1", "10.92.0.2", "42000", "7000", "pass"],
      ["10.91.0.1", "10.92.0.2", "42001", "7001", "drop DROP_POLICY"],
      ["10.91.0.1", "10.92.0.2", "42002", "7000", "pass"],
    ]);
  });

  it("refuses a bad stage before writing anything", async () => {
    const file = join(dir, "refused.pcapng");
    const r = spawnSync(process.execPath, [CLI, "capture", "-w", file, "--stage", "during", "--socket", socket], { encoding: "utf8" });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('stage "during" is not one of before, after');
    expect(existsSync(file)).toBe(false);
  });
});
