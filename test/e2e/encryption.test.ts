/**
 * End to end: pod traffic between two nodes' TUN forwarders, encrypted in
 * userspace (ESP in UDP 4500, AES-GCM-128), in network namespaces
 * (host/demo/encrypted-pair.ts; everything named en<pid>-*).
 *
 * - A UDP stream pod1 -> pod2 -> pod1 and a ping stream run across a rolling key update
 *   (SPI 3 -> 4) done in REFERENCE.md's order: both nodes get the new key
 *   file (installed for every peer), and only once both status files show
 *   it does each node's peers file advertise the other's new key index.
 *   Every datagram and every echo request is answered: zero loss.
 * - The underlay is captured during the stream; tshark, given the two keys,
 *   decrypts it independently: both SPIs are on the wire, and the inner
 *   packets are the stream's UDP datagrams.
 * - After the grace period the old key is gone from both nodes' status.
 * - A second rotation (4 -> 5) under an iperf3 TCP stream: not one datagram
 *   is refused on either node across the switch.
 * - A restarted forwarder resumes above every sequence number it may have
 *   sent; node 1 then runs as `membrane agent --encrypt-keys` (the kernel
 *   probe's reason in its start line, the TUN at the corrected MTU).
 * - Truncated, tampered and unknown-SPI datagrams are named, counted drops.
 * - A tampered key file is refused (status names the line and field) and
 *   the keys in use stay.
 */
import { spawnSync, spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeIf } from "../support/describe-if.js";
import { waitFor } from "../support/wait-for.js";
import { EncryptedPair, type PairNode } from "../../host/demo/encrypted-pair.js";
import { iproute2Unavailable } from "../../host/sys/netns/iproute2.js";
import { packageRoot } from "../../host/package-root.js";
import type { EncryptionStatus } from "../../host/forwarder/esp-path.js";
import { ESP_STATUS_FILE } from "../../host/forwarder/esp-state-file.js";
import { cli } from "../support/run-cli.js";

const KEY3 = "0123456789abcdef0123456789abcdefcafebabe";
const KEY4 = "fedcba9876543210fedcba9876543210deadbeef";
const line = (spi: number, hex: string) => `${spi} rfc4106(gcm(aes)) 0x${hex} 128`;
const ECHO_PORT = 7100;
const COUNT = 5000;

function missing(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root (network namespaces)";
  const ip = iproute2Unavailable();
  if (ip) return ip;
  if (spawnSync("tshark", ["--version"]).error) return "tshark is not installed (Debian: tshark)";
  if (!existsSync(join(packageRoot(), "dist/host/demo/esp-node.js"))) return "dist/ is not built: npm run build:host";
  if (!existsSync("/dev/net/tun")) return "no /dev/net/tun";
  return undefined;
}

const traffic = join(packageRoot(), "test/e2e/esp-traffic.mjs");
const status = (n: PairNode): EncryptionStatus | undefined => {
  try {
    return JSON.parse(readFileSync(join(n.dir, ESP_STATUS_FILE), "utf8")) as EncryptionStatus;
  } catch {
    return undefined;
  }
};

describeIf("encrypted pod traffic between two forwarders", missing(), () => {
  const pair = new EncryptedPair(`en${process.pid}`, { encrypt: true, graceSeconds: 3 });
  const [n1, n2] = pair.nodes;
  let capture: ReturnType<typeof spawn> | undefined;
  const pcap = join(pair.stateRoot, "underlay.pcap");

  beforeAll(() =>
    pair.bringUp(line(3, KEY3), 3, async () => {
      await pair.start(n1);
      await pair.start(n2);
    }), 60_000);

  afterAll(async () => {
    if (capture?.pid) {
      try { process.kill(capture.pid, "SIGKILL"); } catch { /* gone */ }
    }
    for (const n of pair.nodes) await pair.stop(n);
    const problems = await pair.teardown();
    expect(problems).toEqual([]);
    expect(pair.lab.leftovers()).toEqual([]);
  }, 30_000);

  it("says which path it uses: userspace, with the kernel's missing ESP named", () => {
    const s = status(n1)!;
    expect(s.path).toBe("userspace");
    expect(s.kernel).toMatch(/CONFIG_INET_ESP/);
    expect(s.currentKey).toBe(3);
    expect(JSON.stringify(s)).not.toContain(KEY3.slice(0, 16));
  });

  it("rotates the key under a continuous UDP stream with zero loss; tshark decrypts the capture", async () => {
    const echo = pair.lab.spawn(n2.pod, [process.execPath, traffic, "udp-echo", n2.podIp, String(ECHO_PORT)]);
    await echo.ready();
    capture = spawn("ip", ["netns", "exec", n1.ns, "dumpcap", "-q", "-i", n1.underlayIf, "-f", "udp port 4500", "-w", pcap], { stdio: ["ignore", "ignore", "pipe"] });
    await waitFor("dumpcap writing the capture", () => existsSync(pcap) || undefined, { timeoutMs: 10_000 });
    const stream = pair.lab.spawn(n1.pod, [process.execPath, traffic, "udp-stream", n2.podIp, String(ECHO_PORT), String(COUNT), "2"]);
    await stream.ready();
    // A ping stream beside it, across the same switch: 600 echo requests 15 ms apart (9 s).
    const pingOut = join(pair.stateRoot, "ping.txt");
    const ping = pair.lab.spawn(n1.pod, ["sh", "-c", `ping -n -q -c 600 -i 0.015 -W 2 ${n2.podIp} > ${pingOut}; echo '{"done":true}'`]);
    await stream.waitLine("the stream under key 3", (l) => (l as { received?: number }).received! >= 300, 10_000);
    // 1. Both nodes install key 4 for every peer (key file watched).
    for (const n of pair.nodes) pair.writeKey(n, line(4, KEY4));
    await waitFor("both nodes hold key 4", () => pair.nodes.every((n) => status(n)?.currentKey === 4) || undefined, { timeoutMs: 10_000 });
    // Neither advertises it yet, so both still send under 3.
    expect(status(n1)!.peers[0]!.sendKey).toBe(3);
    // 2. Each node's record advertises 4 (the peers files are the node records here); senders switch.
    for (const n of pair.nodes) pair.writePeers(n, 4);
    await waitFor("both nodes send under key 4", () => pair.nodes.every((n) => status(n)?.peers[0]?.sendKey === 4) || undefined, { timeoutMs: 10_000 });
    expect(stream.running, "the stream must still run under the new key").toBe(true);
    expect(ping.running, "the ping stream must still run under the new key").toBe(true);
    // `membrane encrypt status` asks node 1's forwarder (its status file) mid-stream.
    // The status file is written once a second: wait for one written after the switch.
    const table = await waitFor("a status table with the SA under key 4", async () => {
      const t = await cli("encrypt", "status", "--state-dir", n1.dir);
      return t.code === 0 && / out\s+4\s/.test(t.out) ? t : undefined;
    }, { timeoutMs: 5_000 });
    expect(table.out).toMatch(/path: userspace \(ESP in UDP on 192\.168\.71\.1:4500\); kernel path not used: kernel lacks ESP/);
    expect(table.out).toMatch(/n2\s+192\.168\.71\.2\s+out\s+4\s+0x00000004/);
    expect(table.out).toMatch(/retired .* s ago, removed in/);
    const json = JSON.parse((await cli("encrypt", "status", "--state-dir", n1.dir, "--json")).out) as EncryptionStatus;
    expect(json.peers[0]!.sendKey).toBe(4);
    for (const text of [table.out, JSON.stringify(json)]) expect(text).not.toContain(KEY4.slice(0, 16));
    const result = await stream.result<{ sent: number; received: number; missing: number[] }>(60_000);
    expect(result.sent).toBe(COUNT);
    expect(result.missing).toEqual([]);
    expect(result.received).toBe(COUNT);
    await ping.waitLine("ping done", (l) => (l as { done?: boolean }).done === true, 30_000);
    const pinged = /(\d+) packets transmitted, (\d+) received/.exec(readFileSync(pingOut, "utf8"));
    expect(pinged, "ping's summary line").not.toBeNull();
    expect([Number(pinged![1]), Number(pinged![2])], "echo requests sent and answered across the switch").toEqual([600, 600]);
    // 3. After the grace period the old key is gone.
    await waitFor("key 3 removed after the grace period", () => pair.nodes.every((n) => status(n)?.keys.map((k) => k.spi).join() === "4") || undefined, { timeoutMs: 15_000 });
    const s1 = status(n1)!;
    expect(s1.counters.drops["bad-icv"] + s1.counters.drops.replayed + s1.counters.drops["unknown-spi"]).toBe(0);
    expect(s1.peers[0]!.in.map((i) => i.spi)).toEqual([4]);
    process.kill(capture.pid!, "SIGINT");
    await new Promise((r) => capture!.once("close", r));
    capture = undefined;

    const sa = (src: PairNode, dst: PairNode, spi: number, hex: string) =>
      `"IPv4","${src.underlayIp}","${dst.underlayIp}","0x0000000${spi}","AES-GCM with 16 octet ICV [RFC4106]","0x${hex}","NULL",""`;
    const args = ["-r", pcap, "-o", "esp.enable_encryption_decode:TRUE"];
    for (const [spi, hex] of [[3, KEY3], [4, KEY4]] as const) {
      args.push("-o", `uat:esp_sa:${sa(n1, n2, spi, hex)}`, "-o", `uat:esp_sa:${sa(n2, n1, spi, hex)}`);
    }
    const r = spawnSync("tshark", [...args, "-Y", "esp", "-T", "fields", "-e", "esp.spi", "-e", "ip.dst", "-e", "udp.port", "-e", "icmp.type"], { encoding: "utf8", maxBuffer: 64 << 20 });
    expect(r.status, r.stderr).toBe(0);
    const rows = r.stdout.trim().split("\n").map((l) => l.split("\t"));
    const spis = new Set(rows.map((f) => f[0]));
    expect([...spis].sort()).toEqual(["0x00000003", "0x00000004"]);
    // Decrypted: the inner destination (a pod) and the stream's port, beside the outer ones.
    const decoded = rows.filter((f) => f[1]?.split(",").includes(n2.podIp) && f[2]?.split(",").includes(String(ECHO_PORT)));
    expect(decoded.length).toBeGreaterThan(COUNT * 0.9);
    // The ping went sealed too: tshark finds echo requests (type 8) to the pod inside ESP.
    const echoes = rows.filter((f) => f[1]?.split(",").includes(n2.podIp) && f[3]?.split(",").includes("8"));
    expect(echoes.length).toBeGreaterThan(600 * 0.9);
    echo.kill();
  }, 120_000);

  it("rotates again under an iperf3 TCP stream without a single ESP drop", async () => {
    const KEY5 = "00112233445566778899aabbccddeeff01020304";
    const before = pair.nodes.map((n) => status(n)!.counters);
    const server = pair.lab.spawn(n2.pod, ["iperf3", "-s", "-1", "-B", n2.podIp, "-J"]);
    const client = pair.lab.spawn(n1.pod, ["sh", "-c", `for i in $(seq 100); do iperf3 -c ${n2.podIp} -t 8 -J > ${join(pair.stateRoot, "iperf.json")} && break; sleep 0.1; done; echo '{"done":true}'`]);
    await waitFor("iperf3 traffic under key 4", () => (status(n1)?.counters.sealed ?? 0) > before[0]!.sealed + 5000 || undefined, { timeoutMs: 15_000 });
    for (const n of pair.nodes) pair.writeKey(n, line(5, KEY5));
    await waitFor("both nodes hold key 5", () => pair.nodes.every((n) => status(n)?.currentKey === 5) || undefined, { timeoutMs: 10_000 });
    for (const n of pair.nodes) pair.writePeers(n, 5);
    await waitFor("both nodes send under key 5", () => pair.nodes.every((n) => status(n)?.peers[0]?.sendKey === 5) || undefined, { timeoutMs: 10_000 });
    await client.waitLine("iperf3 done", (l) => (l as { done?: boolean }).done === true, 30_000);
    await server.exited;
    const report = JSON.parse(readFileSync(join(pair.stateRoot, "iperf.json"), "utf8")) as { end: { sum_received: { bytes: number } } };
    expect(report.end.sum_received.bytes).toBeGreaterThan(0);
    // Traffic went on under 5, and not one datagram was refused on either side across the switch.
    await waitFor("a status with the SA under key 5", () => status(n1)?.peers[0]?.out.some((o) => o.keyIndex === 5) || undefined, { timeoutMs: 5_000 });
    pair.nodes.forEach((n, i) => expect(status(n)!.counters.drops, n.ns).toEqual(before[i]!.drops));
  }, 90_000);

  it("resumes its SAs after a forwarder restart above every sequence number it may have sent", async () => {
    const before = status(n1)!.peers[0]!.out.find((o) => o.keyIndex === 5)!.seq;
    await pair.stop(n1);
    await pair.start(n1);
    const echo = pair.lab.spawn(n2.pod, [process.execPath, traffic, "udp-echo", n2.podIp, String(ECHO_PORT + 1)]);
    await echo.ready();
    const stream = pair.lab.spawn(n1.pod, [process.execPath, traffic, "udp-stream", n2.podIp, String(ECHO_PORT + 1), "200", "1"]);
    const result = await stream.result<{ received: number; missing: number[] }>(30_000);
    expect(result.missing).toEqual([]);
    const after = await waitFor("n1's status after the restart", () => status(n1)?.peers[0]?.out.find((o) => o.keyIndex === 5), { timeoutMs: 5_000 });
    expect(after.seq).toBeGreaterThan(before + 1000);
    // The peer's window took the jump; nothing was refused as a replay.
    expect(status(n2)!.counters.drops.replayed).toBe(0);
    echo.kill();
  }, 60_000);

  it("runs the same SAs under `membrane agent --encrypt-keys`: the probe's reason, the corrected MTU, no loss", async () => {
    await pair.stop(n1);
    const agent = await pair.startAgent(n1);
    const said = agent.lines.filter((l): l is string => typeof l === "string");
    expect(said.some((l) => /membrane agent: encryption: kernel lacks ESP with AES-GCM \(CONFIG_INET_ESP.*ESP in UDP on 192\.168\.71\.1:4500/.test(l))).toBe(true);
    expect(said.some((l) => /forwarding on en-tun1 \(mtu 1435, offloads off \(--encrypt-keys seals packets one by one\)\)/.test(l))).toBe(true);
    const echo = pair.lab.spawn(n2.pod, [process.execPath, traffic, "udp-echo", n2.podIp, String(ECHO_PORT + 2)]);
    await echo.ready();
    const stream = pair.lab.spawn(n1.pod, [process.execPath, traffic, "udp-stream", n2.podIp, String(ECHO_PORT + 2), "300", "1"]);
    const result = await stream.result<{ received: number; missing: number[] }>(30_000);
    expect(result.missing).toEqual([]);
    const st = await cli("encrypt", "status", "--state-dir", n1.dir, "--json");
    expect(st.code, st.err).toBe(0);
    expect((JSON.parse(st.out) as EncryptionStatus).counters.sealed).toBeGreaterThanOrEqual(300);
    echo.kill();
  }, 60_000);

  it("drops truncated, tampered and unknown-SPI datagrams by name, and keeps forwarding", async () => {
    const before = status(n2)!.counters.drops;
    // SPI, then a sequence number ahead of the replay window (so the ICV is what refuses it), then junk.
    const esp = (spi: number, body: number) => Buffer.concat([Buffer.from([0, 0, 0, spi, 0x7f, 0, 0, 9]), Buffer.alloc(body, 0xab)]).toString("hex");
    // The datagrams come from node 1's underlay address, as a peer's would.
    const send = pair.lab.spawn(n1.ns, [process.execPath, traffic, "udp-send", n2.underlayIp, "4500", [esp(5, 4), esp(5, 64), esp(9, 64)].join(",")]);
    await send.result(10_000);
    const after = await waitFor("the drops counted", () => {
      const d = status(n2)?.counters.drops;
      return d && d.truncated > before.truncated && d["bad-icv"] > before["bad-icv"] && d["unknown-spi"] > before["unknown-spi"] ? d : undefined;
    }, { timeoutMs: 5_000, detail: () => `drops before ${JSON.stringify(before)}, now ${JSON.stringify(status(n2)?.counters.drops)}` });
    expect(after.truncated - before.truncated).toBe(1);
    expect(after["bad-icv"] - before["bad-icv"]).toBe(1);
    expect(after["unknown-spi"] - before["unknown-spi"]).toBe(1);
    expect(n2.process?.running).toBe(true);
  });

  it("refuses a bad key file with its line and field and keeps the keys in use", async () => {
    writeFileSync(n1.keyFile, "16 rfc4106(gcm(aes)) 0x" + KEY3 + " 128\n");
    // writeFileSync truncates before it writes, so the once-a-second reload may first catch an empty file
    // ("no key"); the file's stamp changes again when the write completes and the next reload names the bad field.
    const s = await waitFor("the refusal in status", () => {
      const e = status(n1)?.keyFileError;
      return e && /keys:1: SPI: must be 1..15/.test(e) ? e : undefined;
    }, { timeoutMs: 10_000, detail: () => `keyFileError now ${JSON.stringify(status(n1)?.keyFileError)}` });
    expect(s).toMatch(/keys:1: SPI: must be 1..15/);
    expect(status(n1)!.currentKey).toBe(5);
    expect(JSON.stringify(status(n1))).not.toContain(KEY3.slice(0, 16));
  });
});
