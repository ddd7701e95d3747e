/**
 * `npm run bench:encryption`: forwarding between two nodes' pods, plain vs
 * encrypted (userspace ESP, AES-GCM-128) vs wireguard-go, side by side in
 * one run (host/demo/encrypted-pair.ts; namespaces en<pid>-*).
 *
 * - plain: pod -> node 1's forwarder -> underlay -> node 2's forwarder -> pod
 *   (both forwarders decide every packet; the kernel routes between them).
 * - encrypted: the same forwarders, node 1's sealing into ESP-in-UDP and
 *   node 2's opening it (and back for ACKs/echoes).
 * - wireguard-go: no forwarders; a wireguard-go device in each node with the
 *   other pod CIDR routed into it: a peer doing the same job (userspace
 *   encryption between the same namespaces) in Go, multi-threaded.
 *
 * Per mode: iperf3 TCP pod1 -> pod2 (one stream, IPERF_S seconds, the
 * receiver's rate) and iperf3 UDP with 64-byte IP packets (-l 36, unlimited
 * rate: the packets per second that arrive). CPU per packet = the CPU time
 * of the packet movers (both nodes' forwarder processes, or both
 * wireguard-go processes; /proc/<pid>/stat utime + stime) over the TCP run /
 * the packets on node 1's underlay link (rx + tx) over it: one unit for all
 * three. Modes run in the order plain, encrypted, wireguard-go, then
 * encrypted and plain again (ABCBA) and the figures are means, so drift on a
 * shared machine weighs on all alike.
 *
 * Goal (issue 15): encrypted TCP throughput >= 1.0x wireguard-go's on this
 * machine. Printed MET / NOT MET.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { EncryptedPair, type PairNode } from "../host/demo/encrypted-pair.js";
import { sweep } from "../host/sys/netns/lab.js";
import { machineFacts, printMachineFacts } from "./machine.js";

const IPERF_S = 5;
const KEY = "3 rfc4106(gcm(aes)) 0x0123456789abcdef0123456789abcdefcafebabe 128";
const WG_PORT = 51820;
type Mode = "plain" | "encrypted" | "wireguard-go";

interface Run {
  mode: Mode;
  tcpMbps: number;
  udp64Pps: number;
  cpuNsPerPacket: number;
}

const ticks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;

function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  // After "pid (comm) ": state is field 3, so utime (14) and stime (15) are at 11 and 12.
  return (Number(fields[11]) + Number(fields[12])) / ticks;
}

function underlayPackets(n: PairNode): number {
  const j = JSON.parse(execFileSync("ip", ["-n", n.ns, "-s", "-j", "link", "show", n.underlayIf], { encoding: "utf8" })) as Array<{ stats64: { rx: { packets: number }; tx: { packets: number } } }>;
  return j[0]!.stats64.rx.packets + j[0]!.stats64.tx.packets;
}

function iperf(pair: EncryptedPair, args: string[]): Record<string, any> {
  const [n1, n2] = pair.nodes;
  const server = pair.lab.spawn(n2.pod, ["iperf3", "-s", "-1", "-B", n2.podIp, "-J"]);
  // iperf3 has no ready line: the client retries its connection below until the server listens.
  let last = "";
  for (let attempt = 0; attempt < 300; attempt++) {
    const r = spawnSync("ip", ["netns", "exec", n1.pod, "iperf3", "-c", n2.podIp, "-t", String(IPERF_S), "-J", ...args], { encoding: "utf8", timeout: (IPERF_S + 20) * 1000 });
    const out = JSON.parse(r.stdout || "{}") as Record<string, any>;
    if (!out.error) {
      server.kill();
      return out;
    }
    last = out.error as string;
    if (!/connect|refused/i.test(last)) break;
    spawnSync("sleep", ["0.1"]);
  }
  server.kill();
  throw new Error(`iperf3 ${args.join(" ")}: ${last}`);
}

async function setUp(mode: Mode, prefix: string): Promise<{ pair: EncryptedPair; movers: number[] }> {
  await sweep(prefix);
  const pair = new EncryptedPair(prefix, { encrypt: mode === "encrypted", wireguard: mode === "wireguard-go" });
  pair.create();
  await pair.waitUp();
  const movers: number[] = [];
  if (mode === "wireguard-go") {
    const keys = pair.nodes.map(() => {
      const priv = execFileSync("wg", ["genkey"], { encoding: "utf8" }).trim();
      return { priv, pub: execFileSync("wg", ["pubkey"], { input: priv, encoding: "utf8" }).trim() };
    });
    for (const n of pair.nodes) {
      const other = pair.other(n);
      const me = keys[n.index - 1]!;
      const dev = `enwg${n.index}`;
      const p = pair.lab.spawn(n.ns, ["wireguard-go", "-f", dev], { env: { WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: "1", LOG_LEVEL: "error" } });
      for (let i = 0; i < 100 && !execFileSync("ip", ["-n", n.ns, "link"], { encoding: "utf8" }).includes(dev); i++) spawnSync("sleep", ["0.05"]);
      const keyFile = `${n.dir}/wg.key`;
      execFileSync("sh", ["-c", `umask 077; printf '%s' "$1" > "$2"`, "sh", me.priv, keyFile]);
      execFileSync("ip", ["netns", "exec", n.ns, "wg", "set", dev, "listen-port", String(WG_PORT), "private-key", keyFile,
        "peer", keys[other.index - 1]!.pub, "endpoint", `${other.underlayIp}:${WG_PORT}`, "allowed-ips", other.podCidr]);
      execFileSync("ip", ["-n", n.ns, "link", "set", dev, "mtu", String(pair.mtu), "up"]);
      execFileSync("ip", ["-n", n.ns, "route", "add", other.podCidr, "dev", dev]);
      movers.push(p.child.pid!);
    }
  } else {
    for (const n of pair.nodes) {
      if (mode === "encrypted") {
        pair.writeKey(n, KEY);
        pair.writePeers(n, 3);
      }
      const p = await pair.start(n);
      movers.push(p.child.pid!);
    }
  }
  return { pair, movers };
}

async function measure(mode: Mode, prefix: string): Promise<Run> {
  const { pair, movers } = await setUp(mode, prefix);
  try {
    // Warm-up: neighbour resolution, WireGuard's handshake.
    iperf(pair, ["-t", "1"]);
    const cpu0 = movers.reduce((s, p) => s + cpuSeconds(p), 0);
    const pk0 = underlayPackets(pair.nodes[0]);
    const tcp = iperf(pair, []);
    const cpu1 = movers.reduce((s, p) => s + cpuSeconds(p), 0);
    const pk1 = underlayPackets(pair.nodes[0]);
    const udp = iperf(pair, ["-u", "-l", "36", "-b", "0"]);
    const sum = udp.end.sum as { packets: number; lost_packets: number; seconds: number };
    return {
      mode,
      tcpMbps: (tcp.end.sum_received.bits_per_second as number) / 1e6,
      udp64Pps: (sum.packets - sum.lost_packets) / sum.seconds,
      cpuNsPerPacket: ((cpu1 - cpu0) * 1e9) / Math.max(1, pk1 - pk0),
    };
  } finally {
    for (const n of pair.nodes) await pair.stop(n);
    const problems = await pair.teardown();
    if (problems.length) console.error(`  cleanup: ${problems.join("; ")}`);
  }
}

const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;

async function main(): Promise<void> {
  printMachineFacts(machineFacts());
  const prefix = `en${process.pid}`;
  const order: Mode[] = ["plain", "encrypted", "wireguard-go", "encrypted", "plain"];
  const runs: Run[] = [];
  const load0 = loadavg();
  console.log(`\n== encryption: plain vs encrypted (userspace ESP) vs wireguard-go, order ${order.join(", ")} ==`);
  for (const mode of order) {
    const r = await measure(mode, prefix);
    runs.push(r);
    console.log(`  ${mode.padEnd(13)} TCP ${r.tcpMbps.toFixed(0).padStart(6)} Mbit/s   UDP 64 B ${r.udp64Pps.toFixed(0).padStart(7)} pkt/s   CPU ${r.cpuNsPerPacket.toFixed(0).padStart(6)} ns/packet`);
  }
  const by = (m: Mode) => {
    const rs = runs.filter((r) => r.mode === m);
    return { tcpMbps: mean(rs.map((r) => r.tcpMbps)), udp64Pps: mean(rs.map((r) => r.udp64Pps)), cpuNsPerPacket: mean(rs.map((r) => r.cpuNsPerPacket)) };
  };
  const plain = by("plain"), enc = by("encrypted"), wg = by("wireguard-go");
  const load1 = loadavg();
  console.log("\n  means             TCP Mbit/s   UDP 64 B pkt/s   CPU ns/packet");
  for (const [name, f] of [["plain", plain], ["encrypted", enc], ["wireguard-go", wg]] as const) {
    console.log(`  ${name.padEnd(16)} ${f.tcpMbps.toFixed(0).padStart(10)}   ${f.udp64Pps.toFixed(0).padStart(14)}   ${f.cpuNsPerPacket.toFixed(0).padStart(13)}`);
  }
  console.log(`\n  encrypted / plain:        TCP ${(enc.tcpMbps / plain.tcpMbps).toFixed(2)}x, UDP 64 B ${(enc.udp64Pps / plain.udp64Pps).toFixed(2)}x, CPU per packet ${(enc.cpuNsPerPacket / plain.cpuNsPerPacket).toFixed(2)}x`);
  const goal = enc.tcpMbps / wg.tcpMbps;
  console.log(`  encrypted / wireguard-go: TCP ${goal.toFixed(2)}x, UDP 64 B ${(enc.udp64Pps / wg.udp64Pps).toFixed(2)}x, CPU per packet ${(enc.cpuNsPerPacket / wg.cpuNsPerPacket).toFixed(2)}x`);
  console.log(`  goal: encrypted TCP >= 1.0x wireguard-go's: ${goal >= 1 ? "MET" : "NOT MET"} (${goal.toFixed(2)}x)`);
  console.log(`  load average before ${load0.map((l) => l.toFixed(2)).join(" ")}, after ${load1.map((l) => l.toFixed(2)).join(" ")} (2 cores shared with other work: figures are noisy)`);
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : e);
  process.exitCode = 1;
});
