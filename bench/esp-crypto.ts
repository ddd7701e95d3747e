/**
 * `npm run bench:esp-crypto`: ESP seal and open, ns per packet, native
 * (native/esp_gcm.c: one EVP context per SA, a batch per call) vs node:crypto
 * (host/encrypt/esp.ts: a cipher per packet), 64-byte and 1400-byte inner
 * packets, in the same run. Rows:
 *
 * - seal / open: the crypto alone (native: the inner packet copied into its
 *   slot and a batch of BATCH sealed in one call; open: the datagram copied
 *   into its slot, as recvmmsg leaves it, and opened in place).
 * - batch seal: the forwarder's whole outbound step without the socket
 *   (host/forwarder/esp-batch.ts: tunnel planning, copy, crypto), native vs
 *   node:crypto through the same class.
 *
 * Rounds alternate native and node:crypto (A B A B ...) and the figure is
 * the median round, so drift on a shared machine weighs on both alike.
 * The ratio is node:crypto / native (how many times faster native is).
 */
import { loadavg } from "node:os";
import { open, seal } from "../host/encrypt/esp.js";
import { parseKeyFile } from "../host/encrypt/key-file.js";
import { Keyring } from "../host/encrypt/keyring.js";
import { EspTunnel, type Peer } from "../host/encrypt/tunnel.js";
import { EspBatch } from "../host/forwarder/esp-batch.js";
import { espNative, espNativeUnavailable, SLOT_BODY } from "../host/sys/esp-native.js";
import { sockaddrIn } from "../host/sys/udp-socket.js";
import { parsePrefix } from "../host/packet/cidr.js";
import { num, printTable, type Row } from "./report.js";
import { machineFacts, printMachineFacts } from "./machine.js";

const BATCH = 64;
const ROUNDS = Number(process.env.ESP_BENCH_ROUNDS ?? 7);
const PACKETS_PER_ROUND = Number(process.env.ESP_BENCH_PACKETS ?? 20000);
const key = parseKeyFile("3 rfc4106(gcm(aes)) 0x0123456789abcdef0123456789abcdefcafebabe 128", "bench");

function inner(length: number): Buffer {
  const p = Buffer.alloc(length, 0x5a);
  p[0] = 0x45;
  Buffer.from([10, 2, 0, 9]).copy(p, 16);
  return p;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

/** ns per packet of `fn`, which handles `perCall` packets a call. */
function time(fn: () => void, perCall: number): number {
  const calls = Math.max(1, Math.round(PACKETS_PER_ROUND / perCall));
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < calls; i++) fn();
  return Number(process.hrtime.bigint() - t0) / (calls * perCall);
}

function compare(name: string, size: number, nodeFn: () => void, nodePer: number, nativeFn: () => void, nativePer: number): Row {
  time(nodeFn, nodePer);
  time(nativeFn, nativePer); // warm-up
  const a: number[] = [];
  const b: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    a.push(time(nodeFn, nodePer));
    b.push(time(nativeFn, nativePer));
  }
  const nodeNs = median(a);
  const nativeNs = median(b);
  return { step: name, inner: `${size} B`, "node:crypto ns/pkt": num(nodeNs), "native ns/pkt": num(nativeNs), speedup: `${(nodeNs / nativeNs).toFixed(1)}x` };
}

function main(): void {
  printMachineFacts(machineFacts());
  const loadBefore = loadavg().map((l) => l.toFixed(2)).join(" ");
  const lib = espNative();
  if (!lib) {
    console.log(`skipped: native ESP library unavailable (${espNativeUnavailable()})`);
    return;
  }
  const sa = lib.saNew(key.key, key.salt, 16);
  const stride = 2048;
  const slots = Buffer.alloc(BATCH * stride);
  const lengths = new Uint32Array(BATCH);
  const sas = new BigUint64Array(BATCH).fill(BigInt(sa));
  const spis = new Uint32Array(BATCH).fill(3);
  const seqs = new Uint32Array(BATCH);
  const results = new Int32Array(BATCH);
  const rows: Row[] = [];
  for (const size of [64, 1400]) {
    const p = inner(size);
    let seq = 0;
    rows.push(compare("seal", size,
      () => { seal({ key, spi: 3, seq: ++seq, inner: p }); }, 1,
      () => {
        for (let i = 0; i < BATCH; i++) {
          slots.set(p, i * stride + SLOT_BODY);
          lengths[i] = size;
          seqs[i] = ++seq;
        }
        lib.sealBatch(sas, spis, seqs, slots, stride, lengths, BATCH, 4500, 4500);
      }, BATCH));
    const datagram = seal({ key, spi: 3, seq: 1, inner: p });
    rows.push(compare("open", size,
      () => { if (typeof open(datagram, key) === "string") throw new Error("open failed"); }, 1,
      () => {
        for (let i = 0; i < BATCH; i++) {
          slots.set(datagram, i * stride);
          lengths[i] = datagram.length;
        }
        if (lib.openBatch(sas, slots, stride, lengths, results, BATCH) !== BATCH) throw new Error("native open failed");
      }, BATCH));
    const peer: Peer = { name: "b", address: "192.0.2.2", cidrs: [parsePrefix("10.2.0.0/24", "bench")], keyIndex: 3 };
    const batchOf = (native: boolean) => {
      const ring = new Keyring(300);
      ring.install(key, 0);
      const t = new EspTunnel(ring);
      t.setPeers([peer]);
      const b = new EspBatch(t, { capacity: BATCH, maxInner: 1500, native });
      const to = sockaddrIn(peer.address, 4500);
      return () => {
        for (let i = 0; i < BATCH; i++) b.stage(p, undefined, to);
        b.seal();
        b.count = 0;
      };
    };
    rows.push(compare("batch seal (esp-batch.ts)", size, batchOf(false), BATCH, batchOf(true), BATCH));
  }
  lib.saFree(sa);
  printTable(`ESP crypto per packet, native vs node:crypto (AES-128-GCM, ICV 128, batch ${BATCH}, median of ${ROUNDS} alternating rounds)`, rows, [
    `load average before: ${loadBefore}; after: ${loadavg().map((l) => l.toFixed(2)).join(" ")}`,
  ]);
}

main();
