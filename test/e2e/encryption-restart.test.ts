/**
 * End to end (issue 15): the keys an ESP path holds survive an agent restart
 * (host/forwarder/esp-held-keys.ts), in network namespaces
 * (host/demo/encrypted-pair.ts; everything named er<pid>-*).
 *
 * Node A (n1) is a forwarder (esp-node.ts), node B (n2) runs `membrane agent
 * --encrypt-keys`. Both key files rotate 3 -> 4; B sees A advertise 4, but
 * A's static peers file keeps B at 3, so A goes on sending to B under key 3
 * (B's retired key, within its grace period). Then, while a numbered UDP
 * stream and one established TCP connection run pod A -> pod B, B's agent is
 * restarted twice: SIGTERM, then SIGKILL. After each start:
 * - B holds key 3 again (restored from esp-keys.json) and opens A's traffic
 *   under it: zero unknown-spi drops at B (`membrane encrypt status --json`);
 * - every datagram sent while B was running is answered; those lost while
 *   B's agent was down are counted and printed, not hidden;
 * - the TCP connection survives and every byte comes back.
 * The negative: the same restart with esp-keys.json removed before the
 * start, and B refuses A's traffic under key 3 as unknown-spi.
 * Finally no output, state file, status or metric holds a key's hex, except
 * the 0600 held-keys file and the key files themselves.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeIf } from "../support/describe-if.js";
import { waitFor } from "../support/wait-for.js";
import { EncryptedPair, type PairNode } from "../../host/demo/encrypted-pair.js";
import { iproute2Unavailable } from "../../host/sys/netns/iproute2.js";
import { packageRoot } from "../../host/package-root.js";
import type { NetnsProcess } from "../../host/sys/netns/process.js";
import type { EncryptionStatus } from "../../host/forwarder/esp-path.js";
import { heldKeysPath } from "../../host/forwarder/esp-held-keys.js";
import { cli } from "../support/run-cli.js";

const KEY3 = "00112233445566778899aabbccddeeff0a0b0c0d";
const KEY4 = "8899aabbccddeeff00112233445566770e0f1011";
const line = (spi: number, hex: string) => `${spi} rfc4106(gcm(aes)) 0x${hex} 128`;
const UDP_PORT = 7200;
const TCP_PORT = 7201;
const METRICS = "127.0.0.1:9971";
/** Long enough for both restarts on a loaded machine; the restarts fall inside it. */
const GRACE_S = 600;

function missing(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root (network namespaces)";
  const ip = iproute2Unavailable();
  if (ip) return ip;
  if (!existsSync(join(packageRoot(), "dist/host/demo/esp-node.js"))) return "dist/ is not built: npm run build:host";
  if (!existsSync("/dev/net/tun")) return "no /dev/net/tun";
  return undefined;
}

const traffic = join(packageRoot(), "test/e2e/esp-traffic.mjs");

interface Lost { from: number; to: number; firstSentAt: number; lastSentAt: number }
/** When B's agent was down, wall clock ms: from the signal to its start line. */
interface Outage { how: string; signalAt: number; readyAt: number }

describeIf("encryption keys survive an agent restart (SIGTERM and SIGKILL) within the grace period", missing(), () => {
  const pair = new EncryptedPair(`er${process.pid}`, { encrypt: true, graceSeconds: GRACE_S });
  const [a, b] = pair.nodes;
  /** Everything the processes said, for the key grep at the end. */
  const said: string[] = [];
  const outages: Outage[] = [];

  /** B's encryption status through the CLI, as a user would read it. */
  async function statusOf(n: PairNode): Promise<EncryptionStatus> {
    const r = await cli("encrypt", "status", "--state-dir", n.dir, "--json");
    said.push(r.out, r.err);
    expect(r.code, r.err).toBe(0);
    return JSON.parse(r.out) as EncryptionStatus;
  }

  /** A status written by the running process (not one left by the one before): its pid. */
  const fresh = async (n: PairNode, pid: number) => waitFor(`${n.ns}'s status from pid ${pid}`, async () => {
    const s = await statusOf(n);
    return s.pid === pid ? s : undefined;
  }, { timeoutMs: 10_000 });

  function remember(p: NetnsProcess | undefined): void {
    if (!p) return;
    said.push(p.stderr, ...p.lines.map((l) => (typeof l === "string" ? l : JSON.stringify(l))));
  }

  async function startB(): Promise<NetnsProcess> {
    const p = await pair.startAgent(b, ["--metrics", METRICS]);
    return p;
  }

  /** Stops B's agent with `signal`; the time the signal went and the time B said it forwards again. */
  async function restartB(signal: "SIGTERM" | "SIGKILL", before?: () => void): Promise<{ outage: Outage; status: EncryptionStatus }> {
    const p = b.process!;
    const signalAt = Date.now();
    process.kill(p.child.pid!, signal);
    await p.exited;
    remember(p);
    b.process = undefined;
    before?.();
    const next = await startB();
    const outage = { how: signal, signalAt, readyAt: Date.now() };
    return { outage, status: await fresh(b, next.child.pid!) };
  }

  beforeAll(() =>
    pair.bringUp(line(3, KEY3), 3, async () => {
      await pair.start(a);
      await startB();
    }), 60_000);

  afterAll(async () => {
    for (const n of pair.nodes) {
      remember(n.process);
      await pair.stop(n);
    }
    const problems = await pair.teardown();
    expect(problems).toEqual([]);
    expect(pair.lab.leftovers()).toEqual([]);
  }, 30_000);

  it("A keeps sending under key 3 after the rotation; B opens it after a SIGTERM and a SIGKILL restart", async () => {
    // The rotation: both nodes install 4; B learns A advertises 4, A's view of B stays at 3.
    for (const n of pair.nodes) pair.writeKey(n, line(4, KEY4));
    await waitFor("both nodes hold key 4", async () => (await Promise.all(pair.nodes.map(statusOf))).every((s) => s.currentKey === 4) || undefined, { timeoutMs: 15_000 });
    pair.writePeers(b, 4);
    await waitFor("A sends under 3, B under 4", async () => {
      const [sa, sb] = await Promise.all([statusOf(a), statusOf(b)]);
      return (sa.peers[0]?.sendKey === 3 && sb.peers[0]?.sendKey === 4) || undefined;
    }, { timeoutMs: 15_000 });
    // B's held-keys file: the current key and key 3 with its deadline, 0600.
    expect(statSync(heldKeysPath(b.dir)).mode & 0o777).toBe(0o600);
    const held = JSON.parse(readFileSync(heldKeysPath(b.dir), "utf8")) as { current: { spi: number }; retired: { spi: number; removeAt: string }[] };
    expect(held.current.spi).toBe(4);
    expect(held.retired.map((k) => k.spi)).toEqual([3]);
    expect(Date.parse(held.retired[0]!.removeAt)).toBeGreaterThan(Date.now() + (GRACE_S - 60) * 1000);

    // Traffic A -> B: a numbered UDP stream (echoed) and one TCP connection (echoed).
    const stop = join(pair.stateRoot, "stop-traffic");
    const udpEcho = pair.lab.spawn(b.pod, [process.execPath, traffic, "udp-echo", b.podIp, String(UDP_PORT)]);
    const tcpEcho = pair.lab.spawn(b.pod, [process.execPath, traffic, "tcp-echo", b.podIp, String(TCP_PORT)]);
    await udpEcho.ready();
    await tcpEcho.ready();
    const udp = pair.lab.spawn(a.pod, [process.execPath, traffic, "udp-run", b.podIp, String(UDP_PORT), stop]);
    const tcp = pair.lab.spawn(a.pod, [process.execPath, traffic, "tcp-run", b.podIp, String(TCP_PORT), stop]);
    await udp.ready(15_000);
    await tcp.ready(15_000);
    const progress = (p: NetnsProcess, field: string) => Math.max(0, ...p.lines.map((l) => Number((l as Record<string, unknown>)[field] ?? 0)));
    await waitFor("traffic under key 3 before the first restart", () => progress(udp, "received") >= 500 || undefined, { timeoutMs: 20_000 });
    const opened3 = (s: EncryptionStatus) => s.peers[0]?.in.find((i) => i.keyIndex === 3);
    expect(opened3(await statusOf(b)), "B opens A's traffic under key 3 before the restarts").toBeDefined();

    for (const signal of ["SIGTERM", "SIGKILL"] as const) {
      const { outage, status } = await restartB(signal);
      outages.push(outage);
      expect(status.restoredKeys, `${signal}: key 3 held again`).toEqual([3]);
      expect(status.keyStateError).toBeUndefined();
      expect(status.currentKey).toBe(4);
      expect(status.keys.map((k) => k.spi).sort()).toEqual([3, 4]);
      // B opens A's traffic under 3 again: it counts opened packets on an SA under key 3, and no unknown SPI.
      const after = await waitFor(`${signal}: B opens under key 3 after the restart`, async () => {
        const s = await statusOf(b);
        return (opened3(s) && s.counters.opened > 200) ? s : undefined;
      }, { timeoutMs: 20_000 });
      expect(after.counters.drops["unknown-spi"], `${signal}: unknown-spi drops at B after the restart`).toBe(0);
      const received = progress(udp, "received");
      await waitFor(`${signal}: the stream answered again`, () => progress(udp, "received") > received + 200 || undefined, { timeoutMs: 20_000 });
      expect(after.counters.drops["unknown-spi"]).toBe(0);
    }
    const last = await statusOf(b);
    expect(last.counters.drops["unknown-spi"], "unknown-spi drops at B since the last restart").toBe(0);

    writeFileSync(stop, "");
    const u = await udp.result<{ sent: number; received: number; lost: Lost[] }>(30_000);
    const t = await tcp.result<{ sentBytes: number; echoedBytes: number; error?: string; closedEarly: boolean }>(90_000);
    rmSync(stop);
    udpEcho.kill();
    tcpEcho.kill();

    // The TCP connection survived both restarts, and every byte came back.
    expect(t.error, "the TCP connection saw no error").toBeUndefined();
    expect(t.closedEarly).toBe(false);
    expect(t.echoedBytes).toBe(t.sentBytes);

    // Datagrams lost only while B's agent was down (signal to start line, with 300 ms either side
    // for packets in flight in the dying forwarder and the kernel's first packets into the new TUN).
    const SLACK_MS = 300;
    const during = (l: Lost) => outages.find((o) => l.firstSentAt >= o.signalAt - SLACK_MS && l.lastSentAt <= o.readyAt + SLACK_MS);
    const lostWhileRunning = u.lost.filter((l) => !during(l));
    const lostPer = outages.map((o) => ({
      how: o.how, downMs: o.readyAt - o.signalAt,
      lost: u.lost.filter((l) => during(l) === o).reduce((n, l) => n + l.to - l.from + 1, 0),
    }));
    // Reported, not hidden: how many datagrams each outage cost.
    console.log(`encryption-restart: ${u.sent} datagrams sent, ${u.received} answered; lost while B was down: ${lostPer.map((p) => `${p.how} ${p.lost} in ${p.downMs} ms`).join(", ")}; TCP ${t.sentBytes} bytes sent, ${t.echoedBytes} echoed`);
    expect(lostWhileRunning, "datagrams lost while B was running").toEqual([]);
    expect(u.received).toBe(u.sent - lostPer.reduce((n, p) => n + p.lost, 0));
    expect(u.received).toBeGreaterThan(1000);
  }, 240_000);

  it("negative: with the held-keys file removed before the restart, B refuses A's traffic under key 3 as unknown-spi", async () => {
    const echo = pair.lab.spawn(b.pod, [process.execPath, traffic, "udp-echo", b.podIp, String(UDP_PORT + 2)]);
    await echo.ready();
    // B stops, loses its held keys, starts with the key file's key 4 only.
    const { status } = await restartB("SIGTERM", () => rmSync(heldKeysPath(b.dir)));
    expect(status.restoredKeys).toEqual([]);
    expect(status.keys.map((k) => k.spi)).toEqual([4]);
    // A still sends under 3 (its view of B is 3); a short stream, none of it answered.
    const stream = pair.lab.spawn(a.pod, [process.execPath, traffic, "udp-send", b.podIp, String(UDP_PORT + 2), Array.from({ length: 50 }, () => "00".repeat(64)).join(",")]);
    await stream.result(10_000);
    const s = await waitFor("unknown-spi drops at B", async () => {
      const st = await statusOf(b);
      return st.counters.drops["unknown-spi"] >= 50 ? st : undefined;
    }, { timeoutMs: 10_000, detail: () => "B did not refuse A's traffic under key 3" });
    expect(s.counters.drops["unknown-spi"]).toBeGreaterThanOrEqual(50);
    echo.kill();
  }, 60_000);

  it("a corrupt or unreadable held-keys file: B starts with the key file's key only and says so, naming the file and field", async () => {
    const bad = { version: 2, current: null, retired: [{ spi: 3, icvBits: 128, key: KEY3.slice(2), retiredAt: new Date().toISOString(), removeAt: new Date().toISOString() }] };
    const { status } = await restartB("SIGTERM", () => writeFileSync(heldKeysPath(b.dir), JSON.stringify(bad), { mode: 0o600 }));
    expect(status.keyStateError).toMatch(/held ESP keys .*esp-keys\.json: retired\[0\]\.key: expected 40 lower-case hex digits/);
    expect(status.currentKey).toBe(4);
    expect(status.keys.map((k) => k.spi)).toEqual([4]);
    expect(b.process!.stderr).toMatch(/esp-keys\.json: retired\[0\]\.key: .*starting with the key file's key only/);
    const text = await cli("encrypt", "status", "--state-dir", b.dir);
    said.push(text.out, text.err);
    expect(text.out).toMatch(/held keys NOT restored at start \(started with the key file's key only\)/);
    // The file is rewritten from the keys held now.
    const doc = JSON.parse(readFileSync(heldKeysPath(b.dir), "utf8")) as { current: { spi: number }; retired: unknown[] };
    expect(doc.current.spi).toBe(4);
    expect(doc.retired).toEqual([]);

    // Unreadable and unwritable (a directory in its place): B still starts, says both, and saves once it can.
    const { status: dirStatus } = await restartB("SIGTERM", () => {
      rmSync(heldKeysPath(b.dir));
      mkdirSync(heldKeysPath(b.dir));
    });
    expect(dirStatus.keyStateError).toMatch(/held ESP keys .*esp-keys\.json: cannot be read \(EISDIR\)/);
    expect(dirStatus.keyStateSaveError).toMatch(/esp-keys\.json/);
    expect(b.process!.running).toBe(true);
    rmSync(heldKeysPath(b.dir), { recursive: true });
    await waitFor("the held keys saved once the path is free", () => (existsSync(heldKeysPath(b.dir)) && statSync(heldKeysPath(b.dir)).isFile()) || undefined, { timeoutMs: 10_000 });
    const saved = await waitFor("status without the save error", async () => {
      const st = await statusOf(b);
      return st.keyStateSaveError === undefined ? st : undefined;
    }, { timeoutMs: 10_000 });
    expect(saved.currentKey).toBe(4);
  }, 90_000);

  it("no key's hex in any output, status, metric or state file but the held-keys file and the key files", async () => {
    const metrics = spawnSync("ip", ["netns", "exec", b.ns, process.execPath, "-e", `fetch("http://${METRICS}/metrics").then((r) => r.text()).then((t) => process.stdout.write(t))`], { encoding: "utf8", timeout: 15_000 });
    expect(metrics.status, metrics.stderr).toBe(0);
    expect(metrics.stdout).toMatch(/membrane_/);
    said.push(metrics.stdout);
    const texts = (await Promise.all(pair.nodes.map((n) => cli("encrypt", "status", "--state-dir", n.dir)))).flatMap((r) => [r.out, r.err]);
    for (const n of pair.nodes) remember(n.process);
    const files: string[] = [];
    const walk = (dir: string) => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.isFile()) files.push(p);
      }
    };
    walk(pair.stateRoot);
    const exempt = new Set([heldKeysPath(a.dir), heldKeysPath(b.dir), a.keyFile, b.keyFile]);
    const checked = files.filter((f) => !exempt.has(f));
    expect(checked.length).toBeGreaterThan(3);
    expect(checked.some((f) => f.endsWith("esp-sa.json"))).toBe(true);
    // The key's hex, and also the 16-byte key alone, in lower and upper case.
    const needles = [KEY3, KEY4].flatMap((k) => [k.slice(0, 32), k.slice(0, 32).toUpperCase()]);
    for (const [what, text] of [...checked.map((f) => [f, readFileSync(f, "latin1")] as const), ...[...said, ...texts].map((t, i) => [`output ${i}`, t] as const)]) {
      for (const needle of needles) expect(text.includes(needle), `${what} holds key bytes`).toBe(false);
    }
    // The held-keys file does hold them (so the grep would find them where they are): 0600.
    expect(readFileSync(heldKeysPath(b.dir), "utf8")).toContain(KEY4);
    expect(statSync(heldKeysPath(b.dir)).mode & 0o777).toBe(0o600);
  }, 60_000);
});
