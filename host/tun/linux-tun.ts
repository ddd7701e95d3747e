/**
 * A Linux TUN device (/dev/net/tun) driven through koffi: L3 packets, no
 * packet-info prefix, optionally a virtio_net_hdr per packet so the kernel can
 * hand over unchecksummed (TUN_F_CSUM) and segmentation-offloaded (TSO/USO)
 * super-packets instead of one MTU-sized packet at a time.
 *
 * The fd is non-blocking: a batch read is a loop of read(2) until EAGAIN or
 * the batch is full, and wait() is poll(2). How the loop runs is `io`
 * (tun-io-choice.ts): in C with one FFI call per batch, as an io_uring
 * batch, whichever of those two costs less (adaptive), or one koffi call per
 * packet. Packet bytes move between the kernel
 * and the caller's Uint8Arrays with no copy in between (see libc-tun.ts and
 * native-batch-io.ts).
 *
 * Namespaces: the device is created in the network namespace of the calling
 * thread at open time, and the MTU/link-up ioctls go through a socket made in
 * that same namespace during the same synchronous call. The fd stays bound to
 * the device wherever the interface is later moved (ip link set ... netns).
 * The device is not persistent: it disappears when the fd is closed.
 */
import { endianness } from "node:os";
import { libc } from "../sys/libc.js";
import { InvalidInputError, MembraneError, NotSupportedError } from "../errors.js";
import { checkReadBatch, checkWriteBatch, MAX_GSO_PACKET, VIRTIO_NET_HDR_LEN, type DescriptorBatch, type DescriptorIo, type TunDevice } from "./device.js";
import { TunClosedError, TunIoError } from "./errors.js";
import { libcTun } from "./libc-tun.js";
import { NativeTunIo } from "./native-batch-io.js";
import type { TunIoTuning } from "./io-mode-tuner.js";
import { resolveTunIo, type TunIoChoice, type TunIoMode } from "./tun-io-choice.js";
import { tunNative } from "../sys/tun-native.js";
import {
  AF_INET,
  IFF_NO_PI,
  IFF_TUN,
  IFF_UP,
  IFF_MULTI_QUEUE,
  IFF_VNET_HDR,
  IFNAMSIZ,
  IFREQ_FLAGS_OFFSET,
  IFREQ_MTU_OFFSET,
  IFREQ_SIZE,
  O_CLOEXEC,
  O_NONBLOCK,
  O_RDWR,
  POLLERR,
  POLLFD_SIZE,
  POLLHUP,
  POLLIN,
  POLLNVAL,
  SIOCGIFFLAGS,
  SIOCGIFMTU,
  SIOCSIFFLAGS,
  SIOCSIFMTU,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  TUN_F_CSUM,
  TUN_F_TSO4,
  TUN_F_TSO6,
  TUN_F_USO4,
  TUN_F_USO6,
  TUNSETIFF,
  TUNSETOFFLOAD,
  TUNSETVNETHDRSZ,
} from "./tun-abi.js";

const EINTR = 4;
const ENOENT = 2;
const ENXIO = 6;
const EAGAIN = 11;
const EACCES = 13;
const EBUSY = 16;
const ENODEV = 19;
const EINVAL = 22;
const EPERM = 1;

/** ifreq's short/int members are in host byte order. */
const LITTLE_ENDIAN = endianness() === "LE";

export interface TunOffloadOptions {
  /** Let the kernel hand over packets whose L4 checksum is left for us (TUN_F_CSUM). Implied by tso/uso. */
  csum?: boolean;
  /** TCP segmentation offload, IPv4 and IPv6 (TUN_F_TSO4|TUN_F_TSO6): reads may be 64 KiB super-packets. */
  tso?: boolean;
  /** UDP segmentation offload (TUN_F_USO4|TUN_F_USO6, Linux >= 6.2); dropped with a note when the kernel lacks it. */
  uso?: boolean;
}

export interface OpenTunOptions {
  /** Interface name, at most 15 bytes; "%d" lets the kernel pick a number. Default "mbr%d". */
  name?: string;
  /** MTU to set; default: keep the kernel's (1500). */
  mtu?: number;
  /** Exchange a virtio_net_hdr with every packet (IFF_VNET_HDR); needed for any offload. */
  vnetHdr?: boolean;
  offloads?: TunOffloadOptions;
  /**
   * Open the device as one queue of several (IFF_MULTI_QUEUE): every fd
   * opened on the same name with this flag is a queue of its own, and the
   * kernel picks a queue per packet by flow (openTunQueues).
   */
  multiQueue?: boolean;
  /** The TUN clone device; only tests and unusual systems change it. */
  devicePath?: string;
  /** How packets move (tun-io-choice.ts); default "auto": io_uring or batched syscalls by measurement, else batched syscalls, else koffi per packet. */
  io?: TunIoChoice;
}

/** What the kernel actually agreed to. */
export interface TunOffloads {
  readonly csum: boolean;
  readonly tso: boolean;
  readonly uso: boolean;
}

interface Opened {
  fd: number;
  name: string;
  mtu: number;
  vnetHdr: boolean;
  offloads: TunOffloads;
  notes: string[];
  io: TunIoMode;
}

export class LinuxTun implements TunDevice {
  readonly name: string;
  readonly mtu: number;
  readonly vnetHdr: boolean;
  readonly readCapacity: number;
  /** Offloads in effect (may be fewer than asked; see notes). */
  readonly offloads: TunOffloads;
  /** Degradations decided at open, for people: "kernel lacks USO ...". */
  readonly notes: readonly string[];
  /** How packets move: io_uring, batched syscalls in C, the cheaper of those two (adaptive), or one koffi call per packet. */
  readonly io: TunIoMode;
  /** The native batch path; undefined with "koffi". */
  readonly #native: NativeTunIo | undefined;
  #fd: number;
  readonly #hdr: number;
  /** One struct pollfd, reused by every wait(); koffi passes it in place, so revents lands here. */
  readonly #pollfd = new Uint8Array(POLLFD_SIZE);
  readonly #pollView = new DataView(this.#pollfd.buffer);
  /**
   * The view each read(2)/write(2) gets: a caller's buffer from `offset - hdr`
   * to its end, made once per buffer and start rather than per packet (a
   * subarray per syscall is garbage at a million packets a second). Looked up
   * first by batch slot (a forwarder passes the same buffer in the same slot
   * batch after batch: one comparison), then by buffer (WeakMap: buffers
   * detached by a growing Wasm memory are replaced by new ones).
   */
  readonly #views = new WeakMap<Uint8Array, { start: number; view: Uint8Array }>();
  readonly #slots = { read: new SlotViews(), write: new SlotViews() };

  /** Use openTun(). */
  constructor(opened: Opened) {
    this.#fd = opened.fd;
    this.name = opened.name;
    this.mtu = opened.mtu;
    this.vnetHdr = opened.vnetHdr;
    this.offloads = Object.freeze({ ...opened.offloads });
    this.notes = Object.freeze([...opened.notes]);
    this.io = opened.io;
    this.#native = opened.io === "koffi" ? undefined : new NativeTunIo(tunNative()!, opened.io);
    this.#hdr = opened.vnetHdr ? VIRTIO_NET_HDR_LEN : 0;
    // Segmentation offload lets one read return far more than an MTU.
    this.readCapacity = opened.offloads.tso || opened.offloads.uso ? MAX_GSO_PACKET : opened.mtu;
  }

  /** The TUN fd, or -1 once closed. */
  get fd(): number {
    return this.#fd;
  }

  read(bufs: Uint8Array[], sizes: number[], offset: number): number {
    const fd = this.#open();
    checkReadBatch(this, bufs, sizes, offset);
    if (this.#native) return this.#readNative(fd, bufs, sizes, offset);
    const c = libcTun();
    const hdr = this.#hdr;
    let i = 0;
    while (i < bufs.length) {
      // The view starts at the header (when there is one) and runs to the end
      // of the buffer: one read(2) returns header + packet, written in place.
      const view = this.#slotView(this.#slots.read, i, bufs[i]!, offset - hdr);
      const n = c.read(fd, view, view.length);
      if (n < 0) {
        const errno = c.errno();
        if (errno === EINTR) continue;
        if (errno === EAGAIN) break;
        throw new TunIoError(`read packet ${i} of a batch from ${this.name}`, errno, i);
      }
      if (n < hdr) throw new TunIoError(`read packet ${i} from ${this.name}: ${n} bytes is shorter than the virtio_net_hdr`, EINVAL, i);
      sizes[i] = n - hdr;
      i++;
    }
    return i;
  }

  write(bufs: Uint8Array[], sizes: number[], offset: number): number {
    const fd = this.#open();
    checkWriteBatch(this, bufs, sizes, offset);
    if (this.#native) return this.#writeNative(fd, bufs, sizes, offset);
    const c = libcTun();
    const hdr = this.#hdr;
    let i = 0;
    while (i < bufs.length) {
      // The view runs to the end of the buffer; the count says where the packet ends.
      const n = c.write(fd, this.#slotView(this.#slots.write, i, bufs[i]!, offset - hdr), hdr + sizes[i]!);
      if (n < 0) {
        const errno = c.errno();
        if (errno === EINTR) continue;
        // The device pushed back: report what went out, the caller retries the rest.
        if (errno === EAGAIN) break;
        throw new TunIoError(`write packet ${i} of a batch to ${this.name}`, errno, i);
      }
      i++;
    }
    return i;
  }

  /** read() with one FFI call for the batch: the same results, errors and sizes as the koffi loop. */
  #readNative(fd: number, bufs: Uint8Array[], sizes: number[], offset: number): number {
    const io = this.#native!;
    const hdr = this.#hdr;
    const n = io.read(fd, bufs, bufs.length, offset - hdr, sizes);
    for (let i = 0; i < n; i++) {
      if (sizes[i]! < hdr) throw new TunIoError(`read packet ${i} from ${this.name}: ${sizes[i]} bytes is shorter than the virtio_net_hdr`, EINVAL, i);
      sizes[i] = sizes[i]! - hdr;
    }
    if (io.errno !== 0) throw new TunIoError(`read packet ${n} of a batch from ${this.name}`, io.errno, n);
    return n;
  }

  #writeNative(fd: number, bufs: Uint8Array[], sizes: number[], offset: number): number {
    const io = this.#native!;
    const hdr = this.#hdr;
    let lens = sizes;
    if (hdr !== 0) {
      lens = this.#lens;
      for (let i = 0; i < bufs.length; i++) lens[i] = hdr + sizes[i]!;
    }
    const n = io.write(fd, bufs, bufs.length, offset - hdr, lens);
    // The device pushed back: report what went out, the caller retries the rest.
    if (io.errno !== 0 && io.errno !== EAGAIN) throw new TunIoError(`write packet ${n} of a batch to ${this.name}`, io.errno, n);
    return n;
  }

  /** With native TUN I/O: reads into and writes out of a descriptor batch in one native call each (device.ts). */
  descriptorIo(): DescriptorIo | undefined {
    if (!this.#native) return undefined;
    return (this.#descriptorIo ??= {
      readDescs: (batch, totals) => this.#readDescs(batch, totals),
      writeDescs: (batch, from, totals) => this.#writeDescs(batch, from, totals),
    });
  }

  #descriptorIo: DescriptorIo | undefined;

  ioTuning(): TunIoTuning[] {
    const t = this.#native?.tuning();
    return t ? [t] : [];
  }

  #readDescs(batch: DescriptorBatch, totals: Uint32Array): number {
    const fd = this.#open();
    const io = this.#native!;
    // The room each buffer must have is checked by the C side, per record, against readCapacity (it stops with EINVAL).
    if (batch.readInfo && batch.readInfo.length < batch.count) throw new InvalidInputError(`${this.name}: readInfo has ${batch.readInfo.length} words for ${batch.count} records`);
    const n = io.readDescs(fd, batch, this.#hdr, this.#hdr + this.readCapacity, totals);
    if (io.errno !== 0) throw new TunIoError(`read packet ${n} of a batch from ${this.name}`, io.errno, n);
    return n;
  }

  #writeDescs(batch: DescriptorBatch, from: number, totals: Uint32Array): number {
    const fd = this.#open();
    const io = this.#native!;
    let stop: number;
    if (this.vnetHdr) {
      if (!batch.readInfo || batch.readInfo.length < batch.count) throw new InvalidInputError(`${this.name}: a descriptor write with a virtio_net_hdr needs the batch's readInfo (one word per record, filled by the read)`);
      stop = io.writeGsoDescs(fd, batch, from, batch.readInfo, totals);
    } else {
      stop = io.writeDescs(fd, batch, from, this.#hdr, totals);
    }
    // The device pushed back: report where it stopped, the caller decides about the rest.
    if (io.errno !== 0 && io.errno !== EAGAIN) throw new TunIoError(`write packet ${stop} of a batch to ${this.name}`, io.errno, stop);
    return stop;
  }

  /** Packet lengths with the virtio_net_hdr, for the native write (reused). */
  readonly #lens: number[] = [];

  wait(timeoutMs: number): boolean {
    const fd = this.#open();
    if (!Number.isFinite(timeoutMs)) throw new InvalidInputError(`wait timeout must be a finite number of milliseconds, got ${timeoutMs}`);
    const c = libcTun();
    const deadline = performance.now() + Math.max(0, timeoutMs);
    for (;;) {
      this.#pollView.setInt32(0, fd, LITTLE_ENDIAN);
      this.#pollView.setInt16(4, POLLIN, LITTLE_ENDIAN);
      this.#pollView.setInt16(6, 0, LITTLE_ENDIAN);
      const left = Math.max(0, Math.ceil(deadline - performance.now()));
      const r = c.poll(this.#pollfd, 1, left);
      if (r < 0) {
        const errno = c.errno();
        // A signal cut the sleep short: sleep the remainder, so a false return always means "timed out".
        if (errno === EINTR) continue;
        throw new TunIoError(`poll ${this.name}`, errno);
      }
      if (r === 0) return false;
      const revents = this.#pollView.getInt16(6, LITTLE_ENDIAN);
      if (revents & POLLNVAL) throw new TunIoError(`poll ${this.name}: fd ${fd} is not open`, 9);
      // POLLERR/POLLHUP (the interface was deleted): report ready so the next read surfaces the error.
      return (revents & (POLLIN | POLLERR | POLLHUP)) !== 0;
    }
  }

  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    this.#native?.close();
    // Closing the last fd of a non-persistent TUN deletes the interface.
    libc().close(fd);
  }

  #slotView(slots: SlotViews, i: number, buf: Uint8Array, start: number): Uint8Array {
    if (slots.bufs[i] === buf && slots.start === start) return slots.views[i]!;
    if (slots.start !== start) {
      slots.bufs.length = 0;
      slots.views.length = 0;
      slots.start = start;
    }
    const view = this.#view(buf, start);
    slots.bufs[i] = buf;
    slots.views[i] = view;
    return view;
  }

  #view(buf: Uint8Array, start: number): Uint8Array {
    const cached = this.#views.get(buf);
    if (cached !== undefined && cached.start === start) return cached.view;
    const view = buf.subarray(start);
    this.#views.set(buf, { start, view });
    return view;
  }

  #open(): number {
    if (this.#fd < 0) throw new TunClosedError(this.name);
    return this.#fd;
  }
}

/** Views by batch slot for one direction: slot i's last buffer and its view (all made at `start`). */
class SlotViews {
  start = -1;
  readonly bufs: Uint8Array[] = [];
  readonly views: Uint8Array[] = [];
}

/**
 * Creates a TUN interface in the calling thread's network namespace, sets
 * its MTU and brings it up. Throws NotSupportedError when TUN is unavailable
 * or privileges are missing, InvalidInputError for bad options.
 */
export function openTun(options: OpenTunOptions = {}): LinuxTun {
  const plan = validate(options);
  const io = resolveTunIo(options.io);
  const c = libc();
  const fd = c.open(plan.devicePath, O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw openError(plan.devicePath, c.errno());
  try {
    const opened = configure(fd, plan);
    if (io.note) opened.notes.push(io.note);
    return new LinuxTun({ ...opened, io: io.mode });
  } catch (err) {
    // The interface exists only while the fd is open: closing undoes everything.
    c.close(fd);
    throw err;
  }
}

/**
 * Opens `queues` queues of one TUN device (IFF_MULTI_QUEUE): the first
 * creates it (name, MTU, offloads as openTun), the others attach to it by its
 * resolved name. For each packet the kernel sends into the device it picks a
 * queue by flow: the queue a packet of that flow was last *written* on (its
 * flow table, keyed by the symmetric flow hash, entries age out after a few
 * seconds, at most 4096 flows), else the symmetric flow hash spread over the
 * queues; unless a steering program is attached (kernel/tun-steering.ts,
 * which the forwarder does). The device goes when the last queue is closed.
 */
export function openTunQueues(options: OpenTunOptions, queues: number): LinuxTun[] {
  if (!Number.isInteger(queues) || queues < 1 || queues > 256) {
    throw new InvalidInputError(`TUN queues must be an integer in 1..256, got ${queues}`);
  }
  const first = openTun({ ...options, multiQueue: true });
  const all = [first];
  try {
    for (let i = 1; i < queues; i++) all.push(openTun({ ...options, name: first.name, mtu: undefined, multiQueue: true }));
  } catch (err) {
    for (const q of all) q.close();
    throw err;
  }
  return all;
}

/**
 * Blocks (poll(2) over every queue's fd) up to timeoutMs until one of the
 * queues has a packet to read; MultiQueueTun's wait for real devices.
 */
export const linuxQueueWaiter = {
  waitAny(queues: readonly TunDevice[], timeoutMs: number): boolean {
    if (!Number.isFinite(timeoutMs)) throw new InvalidInputError(`wait timeout must be a finite number of milliseconds, got ${timeoutMs}`);
    const fds = queues.map((q) => {
      if (!(q instanceof LinuxTun)) throw new InvalidInputError(`queue ${q.name} is not a Linux TUN: it cannot be polled with the others`);
      if (q.fd < 0) throw new TunClosedError(q.name);
      return q.fd;
    });
    const pollfds = new Uint8Array(POLLFD_SIZE * fds.length);
    const view = new DataView(pollfds.buffer);
    const c = libcTun();
    const deadline = performance.now() + Math.max(0, timeoutMs);
    for (;;) {
      fds.forEach((fd, i) => {
        view.setInt32(i * POLLFD_SIZE, fd, LITTLE_ENDIAN);
        view.setInt16(i * POLLFD_SIZE + 4, POLLIN, LITTLE_ENDIAN);
        view.setInt16(i * POLLFD_SIZE + 6, 0, LITTLE_ENDIAN);
      });
      const r = c.poll(pollfds, fds.length, Math.max(0, Math.ceil(deadline - performance.now())));
      if (r < 0) {
        const errno = c.errno();
        if (errno === EINTR) continue;
        throw new TunIoError(`poll ${queues[0]!.name} (${fds.length} queues)`, errno);
      }
      if (r === 0) return false;
      // POLLERR/POLLHUP count as ready: the next read surfaces the error (as LinuxTun.wait).
      return fds.some((_, i) => (view.getInt16(i * POLLFD_SIZE + 6, LITTLE_ENDIAN) & (POLLIN | POLLERR | POLLHUP | POLLNVAL)) !== 0);
    }
  },
};

interface Plan {
  multiQueue: boolean;
  name: string;
  mtu: number | undefined;
  vnetHdr: boolean;
  offloadBits: number;
  devicePath: string;
}

function validate(options: OpenTunOptions): Plan {
  const name = options.name ?? "mbr%d";
  const nameBytes = Buffer.byteLength(name);
  // The kernel's dev_valid_name(): non-empty, < IFNAMSIZ, not "." or "..", no '/', ':' or whitespace.
  if (nameBytes === 0 || nameBytes >= IFNAMSIZ || name === "." || name === ".." || /[/:\s]/.test(name)) {
    throw new InvalidInputError(`TUN name ${JSON.stringify(name)} is not a valid interface name (1-15 bytes, no '/', ':' or whitespace)`);
  }
  const mtu = options.mtu;
  if (mtu !== undefined && (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535)) {
    throw new InvalidInputError(`TUN mtu must be an integer in 68..65535, got ${mtu}`);
  }
  const vnetHdr = options.vnetHdr ?? false;
  const { tso = false, uso = false } = options.offloads ?? {};
  const csum = options.offloads?.csum ?? (tso || uso);
  if ((tso || uso) && !csum) {
    // The kernel refuses segmentation without checksum offload: a segment's checksum is left to the reader.
    throw new InvalidInputError("TUN offloads: tso and uso need csum (the kernel rejects segmentation without checksum offload)");
  }
  if (csum && !vnetHdr) {
    throw new InvalidInputError("TUN offloads need vnetHdr: without the virtio_net_hdr a reader cannot tell which packets are unchecksummed or segmented");
  }
  let offloadBits = 0;
  if (csum) offloadBits |= TUN_F_CSUM;
  if (tso) offloadBits |= TUN_F_TSO4 | TUN_F_TSO6;
  // The kernel accepts USO only as the pair.
  if (uso) offloadBits |= TUN_F_USO4 | TUN_F_USO6;
  return { name, mtu, vnetHdr, offloadBits, multiQueue: options.multiQueue ?? false, devicePath: options.devicePath ?? "/dev/net/tun" };
}

function openError(path: string, errno: number): MembraneError {
  switch (errno) {
    case ENOENT:
      return new NotSupportedError(
        `${path} does not exist: the kernel needs CONFIG_TUN (modprobe tun; mknod ${path} c 10 200); ` +
          `in a container pass it in (docker run --device /dev/net/tun --cap-add NET_ADMIN)`,
      );
    case ENODEV:
    case ENXIO:
      return new NotSupportedError(`${path} has no driver behind it: load the tun module (modprobe tun)`);
    case EACCES:
    case EPERM:
      return new NotSupportedError(`cannot open ${path} (permission denied): run as root or with CAP_NET_ADMIN`);
    default:
      return new TunIoError(`open ${path}`, errno);
  }
}

function configure(fd: number, plan: Plan): Omit<Opened, "io"> {
  const c = libcTun();
  const notes: string[] = [];

  const ifr = new Uint8Array(IFREQ_SIZE);
  const ifrView = new DataView(ifr.buffer);
  ifr.set(Buffer.from(plan.name));
  ifrView.setUint16(IFREQ_FLAGS_OFFSET, IFF_TUN | IFF_NO_PI | (plan.vnetHdr ? IFF_VNET_HDR : 0) | (plan.multiQueue ? IFF_MULTI_QUEUE : 0), LITTLE_ENDIAN);
  if (c.ioctlPtr(fd, TUNSETIFF, ifr) < 0) {
    const errno = c.errno();
    if (errno === EPERM || errno === EACCES) {
      throw new NotSupportedError(`create TUN ${plan.name}: permission denied; run as root or with CAP_NET_ADMIN`);
    }
    if (errno === EBUSY) throw new TunIoError(`create TUN ${plan.name}: a TUN of that name is already attached`, errno);
    if (errno === EINVAL) {
      throw new TunIoError(`create TUN ${plan.name}: the name belongs to an interface that is not a TUN, or the flags were refused`, errno);
    }
    throw new TunIoError(`create TUN ${plan.name}`, errno);
  }
  // The kernel wrote the real name back ("mbr%d" -> "mbr0").
  const end = ifr.indexOf(0);
  const name = Buffer.from(ifr.subarray(0, end < 0 || end > IFNAMSIZ ? IFNAMSIZ : end)).toString();

  if (plan.vnetHdr) {
    const size = new Uint8Array(4);
    new DataView(size.buffer).setInt32(0, VIRTIO_NET_HDR_LEN, LITTLE_ENDIAN);
    // 10 is the kernel default too; set it so a future default cannot shift our packet offsets.
    if (c.ioctlPtr(fd, TUNSETVNETHDRSZ, size) < 0) throw new TunIoError(`set virtio_net_hdr size on ${name}`, c.errno());
  }

  let bits = plan.offloadBits;
  if (bits !== 0 && c.ioctlInt(fd, TUNSETOFFLOAD, bits) < 0) {
    let errno = c.errno();
    const usoBits = TUN_F_USO4 | TUN_F_USO6;
    // EINVAL means an unknown bit: the kernel is older than USO (6.2). Carry on without it.
    if (errno === EINVAL && bits & usoBits) {
      bits &= ~usoBits;
      notes.push("kernel lacks TUN UDP segmentation offload (TUN_F_USO4/6, Linux >= 6.2): USO is off, UDP is read one datagram at a time");
      errno = c.ioctlInt(fd, TUNSETOFFLOAD, bits) < 0 ? c.errno() : 0;
    }
    if (errno !== 0) throw new TunIoError(`set offloads 0x${bits.toString(16)} on ${name}`, errno);
  }
  const offloads: TunOffloads = {
    csum: (bits & TUN_F_CSUM) !== 0,
    tso: (bits & TUN_F_TSO4) !== 0,
    uso: (bits & TUN_F_USO4) !== 0,
  };

  const mtu = configureLink(name, plan.mtu);
  return { fd, name, mtu, vnetHdr: plan.vnetHdr, offloads, notes };
}

/**
 * Sets the MTU (if asked), reads it back, and sets IFF_UP, through the classic
 * interface ioctls on a throwaway AF_INET socket: simpler than netlink and
 * the socket lands in the same namespace as the device.
 */
function configureLink(name: string, mtu: number | undefined): number {
  const c = libcTun();
  const sock = c.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) throw new TunIoError(`open a socket to configure ${name}`, c.errno());
  try {
    const ifr = new Uint8Array(IFREQ_SIZE);
    const view = new DataView(ifr.buffer);
    ifr.set(Buffer.from(name));
    if (mtu !== undefined) {
      view.setInt32(IFREQ_MTU_OFFSET, mtu, LITTLE_ENDIAN);
      if (c.ioctlPtr(sock, SIOCSIFMTU, ifr) < 0) throw new TunIoError(`set MTU ${mtu} on ${name}`, c.errno());
    }
    if (c.ioctlPtr(sock, SIOCGIFMTU, ifr) < 0) throw new TunIoError(`read MTU of ${name}`, c.errno());
    const actual = view.getInt32(IFREQ_MTU_OFFSET, LITTLE_ENDIAN);

    if (c.ioctlPtr(sock, SIOCGIFFLAGS, ifr) < 0) throw new TunIoError(`read flags of ${name}`, c.errno());
    view.setUint16(IFREQ_FLAGS_OFFSET, view.getUint16(IFREQ_FLAGS_OFFSET, LITTLE_ENDIAN) | IFF_UP, LITTLE_ENDIAN);
    if (c.ioctlPtr(sock, SIOCSIFFLAGS, ifr) < 0) throw new TunIoError(`bring ${name} up`, c.errno());
    return actual;
  } finally {
    libc().close(sock);
  }
}
