// `membrane demo --encrypt`: the two-node cluster (real agents from dist/, operator, embedded
// kvstore) with each agent sealing what crosses to the other node in userspace ESP (AES-GCM-128
// in UDP 4500), the peers and their key indexes taken from the kvstore's node records. Every
// traffic check and change of the plain demo holds; the key is rotated 3 -> 4 under the two
// streams, which survive it and n2's SIGKILL; neither node drops an ESP packet. The link between
// the nodes is captured: both key indexes are on the wire, and no pod-to-pod packet crossed it in
// the clear.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { describeIf } from "../support/describe-if.js";
import { sweep } from "../../host/sys/netns/lab.js";
import { demoUnavailable } from "../../host/demo/requirements.js";
import { cliMissing } from "../../host/demo/cluster/processes.js";
import { clusterDemoOk, runClusterDemo } from "../../host/demo/cluster/cluster-demo.js";
import { splitWireSpi } from "../../host/encrypt/tunnel.js";

const MISSING = demoUnavailable() ?? cliMissing() ?? (spawnSync("tshark", ["--version"]).error ? "tshark is not installed (Debian: tshark)" : undefined);

describeIf("cluster demo with --encrypt", MISSING, () => {
  const prefix = `dcz${process.pid % 100000}`;
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  const pcap = join(dir, "link.pcap");
  let capture: ChildProcess | undefined;

  afterAll(async () => {
    capture?.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
    const left = await sweep(prefix);
    if (left.length) throw new Error(`the demo left: ${left.join(", ")}`);
  }, 30_000);

  it("seals node-to-node traffic, rotates the key under the streams with no ESP drop, and nothing crosses in the clear", async () => {
    const out: string[] = [];
    const err: string[] = [];
    let streamsDone = 0;
    const onLine = (line: string) => {
      out.push(line);
      // The topology exists once the demo announces the cluster: capture n1's end of the link from then on.
      if (!capture && line.includes('"say":"cluster: nodes')) {
        capture = spawn("ip", ["netns", "exec", `${prefix}-n1`, "tshark", "-q", "-i", `${prefix}-l1`, "-F", "pcap", "-w", pcap], { stdio: "ignore" });
      }
      // Stop it after both streams ended, before the teardown removes the link.
      if (line.includes('"stream":') && ++streamsDone === 2) capture?.kill("SIGINT");
    };
    const r = await runClusterDemo({ out: onLine, err: (l) => err.push(l) }, { prefix, json: true, encrypt: true });
    if (!r.ran) throw new Error(r.reason);
    const s = r.summary;
    expect(err).toEqual([]);
    expect(s.encrypted).toBe(true);
    expect(s.traffic.filter((t) => t.result !== "ok")).toEqual([]);
    expect(s.traffic.map((t) => t.what)).toContain("pod traffic between the nodes in ESP with key 3");
    expect(s.traffic.map((t) => t.what)).toContain("no ESP packet dropped on either node (rotation and restart included)");
    expect(s.changes.map((c) => [c.change, c.ms !== undefined])).toEqual([
      ["backend-c (n2) added to the service", true],
      ["backend-a (n1) removed from the service", true],
      ["pod other relabelled app=frontend", true],
      ["IPsec key rotated 3 -> 4 on both nodes", true],
      ["n2's agent SIGKILLed and started again", true],
    ]);
    expect(s.streams).toMatchObject([{ family: 4, ok: true, echoes: 400 }, { family: 6, ok: true, echoes: 400 }]);
    expect(s.cleanup).toEqual([]);
    expect(clusterDemoOk(s)).toBe(true);

    expect(capture, "the capture never started").toBeDefined();
    if (capture!.exitCode === null) await new Promise((resolve) => capture!.once("close", resolve));
    const fields = (filter: string, ...names: string[]) => {
      const res = spawnSync("tshark", ["-r", pcap, "-Y", filter, "-T", "fields", ...names.flatMap((n) => ["-e", n])], { encoding: "utf8", maxBuffer: 64 << 20 });
      expect(res.status, res.stderr).toBe(0);
      return res.stdout.trim().split("\n").filter((l) => l !== "");
    };
    // Both key indexes crossed the link (each SPI carries its key index in its low 4 bits), in both directions.
    const esp = fields("esp", "esp.spi", "ip.src").map((l) => l.split("\t"));
    const indexes = new Set(esp.map(([spi]) => splitWireSpi(Number(spi)).keyIndex));
    expect([...indexes].sort()).toEqual([3, 4]);
    // (the first ip.src: an ICMP error quoting an ESP packet, e.g. while n2's agent is down, carries a second IP header)
    expect(new Set(esp.map(([, src]) => src!.split(",")[0]))).toEqual(new Set(["10.211.0.1", "10.211.0.2"]));
    // No packet between the two nodes' pod CIDRs was on the link unencrypted, in either family.
    const clear = fields("!esp && ((ip.src == 10.211.1.0/24 && ip.dst == 10.211.2.0/24) || (ip.src == 10.211.2.0/24 && ip.dst == 10.211.1.0/24) || " +
      "(ipv6.src == fd00:211:1::/64 && ipv6.dst == fd00:211:2::/64) || (ipv6.src == fd00:211:2::/64 && ipv6.dst == fd00:211:1::/64))", "frame.number");
    expect(clear).toEqual([]);
  }, 300_000);
});
