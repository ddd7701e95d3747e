/**
 * Userspace ESP between the TUN forwarders of different nodes. EspDevice
 * wraps the forwarder's TUN device, so the forwarder loop does not change:
 *
 * - write(): of the packets the datapath passed, those whose destination is
 *   a peer's pod CIDR are sealed (ESP tunnel mode, AES-GCM, in UDP 4500;
 *   host/encrypt/tunnel.ts) and sent to the peer's underlay address; the
 *   rest go to the TUN as before. The tunnel plans each packet (SPI,
 *   sequence number); the crypto and the send run once per batch
 *   (esp-batch.ts: native/esp_gcm.c and sendmmsg, or node:crypto).
 * - read(): datagrams waiting on the UDP socket (one recvmmsg) are opened
 *   as a batch and their inner packets handed to the datapath like packets
 *   read from the TUN (so the receiving node's policy sees them); then the
 *   TUN fills the batch.
 * - wait(): poll(2) on both.
 *
 * Once a second (between batches) it re-reads the key file and the peers
 * file when they changed (a new SPI installs the new key for every peer at
 * once: the rolling update of REFERENCE.md), expires keys past their grace
 * period, and writes the status file `membrane encrypt status` reads. The
 * SA state (tunnel.ts: sequence reservations, replay windows) is saved
 * whenever a reservation moved, before the next batch; the keys held
 * (current and retired within their grace period: esp-held-keys.ts) whenever
 * that set changed.
 *
 * A held-keys file that cannot be used at start does not stop the start:
 * the key file is the authority and holds the current key, so the path
 * starts with it alone, says so on stderr and in status (`keyStateError`),
 * and rewrites the file from the keys it holds. What is lost is what the
 * file would have saved: packets peers still send under a key retired
 * before the restart are dropped as unknown-spi until the peers switch.
 * Refusing would turn a damaged cache into an outage of all encrypted
 * traffic. (A bad SA state file, by contrast, stops the start: sending
 * without it could repeat a GCM nonce.)
 *
 * Offloads must be off on the device: a TSO super-packet would have to be
 * split before sealing, and a sealed packet is never one the kernel could
 * segment.
 */
import type { TunIoTuning } from "../tun/io-mode-tuner.js";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { TunDevice } from "../tun/device.js";
import { parseKeyFile, describeKey } from "../encrypt/key-file.js";
import { Keyring, DEFAULT_GRACE_SECONDS } from "../encrypt/keyring.js";
import { EspTunnel, type Peer, type TunnelDrop } from "../encrypt/tunnel.js";
import { ESP_UDP_PORT } from "../encrypt/esp.js";
import { parsePeersFile } from "../encrypt/peers-file.js";
import { UdpSocket, sockaddrIn } from "../sys/udp-socket.js";
import { writeFileAtomic } from "../sys/atomic-file.js";
import { EspBatch } from "./esp-batch.js";
import { heldKeysStamp, restoreHeldKeys, saveHeldKeys, type HeldKeysRestore } from "./esp-held-keys.js";
import { InvalidInputError } from "../errors.js";
import { ESP_STATUS_FILE, loadEspState, saveEspState } from "./esp-state-file.js";

export interface EspPathOptions {
  keyFile: string;
  /** Static peers (host/encrypt/peers-file.ts), re-read when the file changes; without it, peers come from setPeers(). */
  peersFile?: string;
  /**
   * Peers to start with, read once at start: the cluster agent's last applied
   * set (forwarder-sink.ts), so a restarted forwarder knows its peers before
   * the agent's first round. After that peers come only from setPeers (the
   * "peers" command): re-reading a file written a moment ago could take an
   * older set back. A missing or unreadable seed starts with no peers (status says why).
   */
  peersSeedFile?: string;
  /** The underlay IPv4 address to receive ESP-in-UDP on. */
  listen: string;
  port?: number;
  /** Packets per crypto batch (default: the forwarder's 128). */
  batchSize?: number;
  /** false: node:crypto even when native/esp_gcm.c is built (benchmarks). */
  native?: boolean;
  /** Where the SA state and the status file live. */
  stateDir: string;
  graceSeconds?: number;
  /** Why the kernel path is not used (probeKernelEsp), for status. */
  kernel?: string;
  /** Wall clock, seconds (default Date.now() / 1000): grace periods and ages. */
  clock?: () => number;
}

/** What `membrane encrypt status` shows (no key material). */
export interface EncryptionStatus {
  path: "userspace";
  kernel?: string;
  pid: number;
  updatedAt: number;
  listen: string;
  keyFile: string;
  currentKey: number;
  keys: { spi: number; current: boolean; algorithm: string; icvBits: number; ageSeconds: number; retiredSecondsAgo?: number; removedInSeconds?: number }[];
  graceSeconds: number;
  keyFileError?: string;
  peersFileError?: string;
  /** Retired keys taken back from the held-keys file at start (SPIs). */
  restoredKeys: number[];
  /** Why the held-keys file was not used at start (the path started with the key file's key only). */
  keyStateError?: string;
  /** Why the held keys could not be saved the last time they were (cleared by a save that works). */
  keyStateSaveError?: string;
  peers: ReturnType<EspTunnel["status"]>;
  counters: EspTunnel["counters"] & { sendPushedBack: number };
  /** Where the crypto runs: native/esp_gcm.c (libcrypto, per batch) or node:crypto. */
  crypto: "native" | "node:crypto";
}


export class EspDevice implements TunDevice {
  readonly keyring: Keyring;
  readonly tunnel: EspTunnel;
  readonly readCapacity: number;
  private readonly socket: UdpSocket;
  private readonly rx: EspBatch;
  private readonly tx: EspBatch;
  private readonly tailSizes: number[] = [];
  private readonly addresses = new Map<string, Buffer>();
  private readonly clock: () => number;
  private readonly grace: number;
  private readonly port: number;
  private nextTick = 0;
  private heldStamp = "";
  private keyStamp = "";
  private peersStamp = "";
  private keyFileError?: string;
  private peersFileError?: string;
  private keyStateError?: string;
  private keyStateSaveError?: string;
  private restoredKeys: number[] = [];
  private sendPushedBack = 0;
  private readonly installedAt = new Map<number, number>();
  /** Pending local packets of a write(), reused. */
  private readonly localBufs: Uint8Array[] = [];
  private readonly localSizes: number[] = [];

  constructor(private readonly tun: TunDevice & { fd: number }, private readonly opts: EspPathOptions) {
    if (tun.vnetHdr) throw new InvalidInputError(`encryption on the TUN path needs the device without offloads (${tun.name} has a virtio_net_hdr)`);
    this.clock = opts.clock ?? (() => Date.now() / 1000);
    this.grace = opts.graceSeconds ?? DEFAULT_GRACE_SECONDS;
    this.port = opts.port ?? ESP_UDP_PORT;
    this.keyring = new Keyring(this.grace);
    // The key file is read before anything is opened: a bad one fails the start with its line and field.
    this.reloadKeys(true);
    // Keys retired in the last run whose grace period is not over: peers may still send under them.
    this.restoreKeys();
    // On disk from the start (the current key too), without the keys whose grace period ended meanwhile.
    this.trySaveHeldKeys();
    this.tunnel = new EspTunnel(this.keyring, loadEspState(opts.stateDir));
    if (opts.peersFile) this.reloadPeers(true);
    else if (opts.peersSeedFile) this.seedPeers(opts.peersSeedFile);
    this.readCapacity = tun.readCapacity;
    const batch = { capacity: opts.batchSize ?? 128, maxInner: tun.readCapacity, sourcePort: this.port, ...(opts.native === false ? { native: false } : {}) };
    this.rx = new EspBatch(this.tunnel, batch);
    this.tx = new EspBatch(this.tunnel, batch);
    this.socket = UdpSocket.bind(opts.listen, this.port);
    this.saveIfDirty();
  }

  get name(): string { return this.tun.name; }
  get mtu(): number { return this.tun.mtu; }
  get vnetHdr(): boolean { return false; }
  get fd(): number { return this.tun.fd; }

  /** Peers from the control plane (node records), when there is no peers file. */
  setPeers(peers: Peer[]): void {
    this.tunnel.setPeers(peers);
    this.peersFileError = undefined; // whatever the last file said, these are the peers now
    for (const p of peers) if (!this.addresses.has(p.address)) this.addresses.set(p.address, sockaddrIn(p.address, this.port));
    // A peer's SAs restored from the last run carry a new reservation: on disk before anything is sent under it.
    this.saveIfDirty();
  }

  read(bufs: Uint8Array[], sizes: number[], offset: number): number {
    this.tick();
    let n = 0;
    const now = this.clock();
    while (n < bufs.length) {
      const want = Math.min(bufs.length - n, this.rx.capacity);
      const got = this.rx.receive(this.socket, want);
      if (got === 0) break;
      n += this.rx.open(bufs, sizes, offset, n, now);
      if (got < want) break; // the socket is drained
    }
    if (n === 0) return this.tun.read(bufs, sizes, offset);
    if (n === bufs.length) return n;
    // The rest of the batch from the TUN (a copy of the arrays: only when ESP filled part of it).
    const tail = bufs.slice(n);
    this.tailSizes.length = tail.length;
    const more = this.tun.read(tail, this.tailSizes, offset);
    for (let i = 0; i < more; i++) sizes[n + i] = this.tailSizes[i]!;
    return n + more;
  }

  write(bufs: Uint8Array[], sizes: number[], offset: number): number {
    this.localBufs.length = 0;
    this.localSizes.length = 0;
    for (let i = 0; i < bufs.length; i++) {
      const pkt = bufs[i]!.subarray(offset, offset + sizes[i]!);
      const peer = this.tunnel.route(pkt);
      if (!peer) {
        this.localBufs.push(bufs[i]!);
        this.localSizes.push(sizes[i]!);
        continue;
      }
      if (this.tx.full) this.flush();
      this.tx.stage(pkt, peer, this.address(peer.address));
    }
    this.flush();
    const local = this.localBufs.length ? this.tun.write(this.localBufs, this.localSizes, offset) : 0;
    return bufs.length - (this.localBufs.length - local);
  }

  /** Seals and sends what write() staged. */
  private flush(): void {
    if (this.tx.count === 0) return;
    this.tx.seal();
    // A reservation moved: on disk before anything under it goes out (tunnel.ts says why).
    this.saveIfDirty();
    this.sendPushedBack += this.tx.send(this.socket);
  }

  wait(timeoutMs: number): boolean {
    return this.socket.waitWith(this.tun.fd, Math.min(timeoutMs, 1000));
  }

  /** The TUN's I/O mode tuner (ESP traffic moves through the same TUN on this thread). */
  ioTuning(): TunIoTuning[] {
    return this.tun.ioTuning?.() ?? [];
  }

  close(): void {
    try {
      this.saveIfDirty(true);
      this.writeStatus();
    } finally {
      this.socket.close();
      this.tun.close();
    }
  }

  status(): EncryptionStatus {
    const now = this.clock();
    return {
      path: "userspace",
      ...(this.opts.kernel ? { kernel: this.opts.kernel } : {}),
      pid: process.pid,
      updatedAt: Date.now(),
      listen: `${this.opts.listen}:${this.port}`,
      keyFile: this.opts.keyFile,
      currentKey: this.keyring.current,
      keys: this.keyring.held().map((h) => {
        const k = describeKey(this.keyring.receiveKey(h.spi)!);
        return {
          spi: h.spi, current: h.current, algorithm: k.algorithm, icvBits: k.icvBits, ageSeconds: round(now - (this.installedAt.get(h.spi) ?? now)),
          ...(h.retiredAt !== undefined ? { retiredSecondsAgo: round(now - h.retiredAt), removedInSeconds: round(Math.max(0, h.removeAt! - now)) } : {}),
        };
      }),
      graceSeconds: this.grace,
      ...(this.keyFileError ? { keyFileError: this.keyFileError } : {}),
      ...(this.peersFileError ? { peersFileError: this.peersFileError } : {}),
      restoredKeys: this.restoredKeys,
      ...(this.keyStateError ? { keyStateError: this.keyStateError } : {}),
      ...(this.keyStateSaveError ? { keyStateSaveError: this.keyStateSaveError } : {}),
      peers: this.tunnel.status(now),
      counters: { ...this.tunnel.counters, drops: { ...this.tunnel.counters.drops }, sendPushedBack: this.sendPushedBack },
      crypto: this.tx.native ? "native" : "node:crypto",
    };
  }

  /** Drops so far, by name. */
  drops(): Record<TunnelDrop, number> {
    return { ...this.tunnel.counters.drops };
  }

  /** Once a second: watched files, grace periods, the status file. */
  private tick(): void {
    const now = this.clock();
    if (now < this.nextTick) return;
    this.nextTick = now + 1;
    this.reloadKeys(false);
    if (this.opts.peersFile) this.reloadPeers(false);
    this.tunnel.forgetKeys(this.keyring.expire(now));
    if (heldKeysStamp(this.keyring) !== this.heldStamp) this.trySaveHeldKeys();
    this.writeStatus();
  }

  private reloadKeys(first: boolean): void {
    const stamp = fileStamp(this.opts.keyFile);
    if (!first && stamp === this.keyStamp) return;
    try {
      const key = parseKeyFile(readFileSync(this.opts.keyFile, "utf8"), this.opts.keyFile);
      if (this.keyring.install(key, this.clock()) === "installed") this.installedAt.set(key.spi, this.clock());
      this.keyFileError = undefined;
    } catch (err) {
      // At start a bad file stops the start; later the keys in use stay, and status says why the new file was not taken.
      if (first) throw err;
      this.keyFileError = (err as Error).message;
    }
    this.keyStamp = stamp;
  }

  private seedPeers(file: string): void {
    try {
      this.setPeers(parsePeersFile(readFileSync(file, "utf8"), file));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return; // a first start: the agent's first round brings them
      this.peersFileError = `seed not used: ${(err as Error).message}`;
    }
  }

  private reloadPeers(first: boolean): void {
    const file = this.opts.peersFile!;
    const stamp = fileStamp(file);
    if (!first && stamp === this.peersStamp) return;
    try {
      this.setPeers(parsePeersFile(readFileSync(file, "utf8"), file));
      this.peersFileError = undefined;
    } catch (err) {
      if (first) throw err;
      this.peersFileError = (err as Error).message;
    }
    this.peersStamp = stamp;
  }

  /** The held-keys file into the keyring; a file that cannot be used is said and skipped (the file comment says why). */
  private restoreKeys(): void {
    let r: HeldKeysRestore;
    try {
      r = restoreHeldKeys(this.opts.stateDir, this.keyring, this.clock(), this.grace);
    } catch (err) {
      // Any failure (a bad field, an unreadable file, a lock that cannot be taken): the messages name files and fields, never key bytes.
      const message = (err as Error).message;
      this.keyStateError = message;
      process.stderr.write(`membrane: encryption: ${message}: starting with the key file's key only (packets under keys retired before this restart are dropped as unknown-spi until peers switch); the file is rewritten from the keys held now\n`);
      return;
    }
    this.restoredKeys = r.restored.map((k) => k.spi);
    for (const k of r.restored) this.installedAt.set(k.spi, this.clock());
    if (r.restored.length) {
      process.stderr.write(`membrane: encryption: holding key${r.restored.length > 1 ? "s" : ""} ${r.restored.map((k) => `${k.spi} (removed in ${Math.round(k.removeAt - this.clock())} s)`).join(", ")} from before the restart, beside the key file's key ${this.keyring.current}\n`);
    }
    for (const d of r.dropped) process.stderr.write(`membrane: encryption: saved key ${d.spi} not taken: ${d.why}\n`);
  }

  /**
   * The keys held, on disk (esp-held-keys.ts), so a restart within a grace
   * period still opens under a retired key. A failure (a full disk, the path
   * taken by a directory) must not stop forwarding: it is said once on
   * stderr and in status (`keyStateSaveError`), and as the stamp did not
   * move, the next tick tries again.
   */
  private trySaveHeldKeys(): void {
    try {
      saveHeldKeys(this.opts.stateDir, this.keyring);
      this.heldStamp = heldKeysStamp(this.keyring);
      this.keyStateSaveError = undefined;
    } catch (err) {
      const message = (err as Error).message;
      if (message !== this.keyStateSaveError) {
        process.stderr.write(`membrane: encryption: the held keys are not saved (a restart within a grace period would lose the retired keys): ${message}\n`);
      }
      this.keyStateSaveError = message;
    }
  }

  private saveIfDirty(force = false): void {
    if (this.tunnel.dirty || force) saveEspState(this.opts.stateDir, this.tunnel.snapshot());
  }

  private writeStatus(): void {
    try {
      writeFileAtomic(join(this.opts.stateDir, ESP_STATUS_FILE), JSON.stringify(this.status()));
    } catch {
      // Status is for people; a full disk must not stop forwarding.
    }
  }

  private address(ip: string): Buffer {
    let sa = this.addresses.get(ip);
    if (!sa) {
      sa = sockaddrIn(ip, this.port);
      this.addresses.set(ip, sa);
    }
    return sa;
  }
}

/** The TUN wrapped for encryption; the TUN is closed when the ESP path cannot start (a bad key file), so no device is left. */
export function openEspPath(tun: TunDevice, opts: EspPathOptions): EspDevice {
  try {
    // One poll(2) waits on the TUN and the UDP socket together: a single-queue device with its fd.
    if (!("fd" in tun) || typeof tun.fd !== "number") throw new InvalidInputError(`encryption on the TUN path needs a single-queue device (${tun.name} has several queues)`);
    return new EspDevice(tun as TunDevice & { fd: number }, opts);
  } catch (err) {
    tun.close();
    throw err;
  }
}

function fileStamp(path: string): string {
  try {
    const s = statSync(path);
    return `${s.ino}:${s.size}:${s.mtimeMs}`;
  } catch (err) {
    return `missing:${(err as NodeJS.ErrnoException).code}`;
  }
}

const round = (s: number) => Math.round(s * 10) / 10;
