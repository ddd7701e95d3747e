/**
 * The packet-batch contract between a TUN device (real or fake) and the
 * forwarder. It follows wireguard-go's tun.Device: the caller owns the
 * buffers, a batch is many packets per call, and every packet starts at the
 * same `offset` into its buffer so that headers (encapsulation, a
 * virtio_net_hdr) can be prepended in place without moving the payload.
 *
 * Packet i of a batch is `bufs[i].subarray(offset, offset + sizes[i])`.
 *
 * With `vnetHdr` the device exchanges a 10-byte struct virtio_net_hdr with
 * every packet (checksum and segmentation offload metadata). It sits in the
 * headroom, at `bufs[i][offset - 10 .. offset)`, so `offset` must then be at
 * least VIRTIO_NET_HDR_LEN. Reads fill it in; on writes the caller must have
 * filled it (all zeros means "complete packet, checksum already correct").
 * Its multi-byte fields are in host byte order (the kernel's legacy virtio
 * layout, since we never set TUNSETVNETLE/BE).
 */
import type { TunIoTuning } from "./io-mode-tuner.js";
import { InvalidInputError } from "../errors.js";

/** sizeof(struct virtio_net_hdr) (linux/virtio_net.h), the header exchanged with vnetHdr. */
export const VIRTIO_NET_HDR_LEN = 10;

/**
 * The largest packet a read may return when segmentation offload is on: a
 * GSO "super-packet" up to the 64 KiB IP limit (the kernel's default
 * gso_max_size), not one MTU.
 */
export const MAX_GSO_PACKET = 65535;

export interface TunDevice {
  /** Interface name as the kernel knows it (with "%d" resolved). */
  readonly name: string;
  readonly mtu: number;
  /** Whether packets carry a virtio_net_hdr in the headroom (see the module comment). */
  readonly vnetHdr: boolean;
  /**
   * The least room a read buffer needs after `offset`: the MTU, or
   * MAX_GSO_PACKET when segmentation offload lets the kernel hand over
   * super-packets. Checked before anything is read.
   */
  readonly readCapacity: number;
  /**
   * Reads up to bufs.length packets without blocking; sets sizes[i] for each.
   * Returns how many were read, 0 when none is ready (use wait()).
   */
  read(bufs: Uint8Array[], sizes: number[], offset: number): number;
  /**
   * Writes packets bufs[i].subarray(offset, offset + sizes[i]) (with their
   * virtio_net_hdr in the headroom when vnetHdr). Returns how many were
   * written; fewer than bufs.length means the device pushed back (EAGAIN) and
   * the rest should be retried later.
   */
  write(bufs: Uint8Array[], sizes: number[], offset: number): number;
  /** Blocks (poll(2)) up to timeoutMs until a read would return a packet; true if one is ready. */
  wait(timeoutMs: number): boolean;
  /** Releases the device; idempotent. Later reads, writes and waits throw. */
  close(): void;
  /**
   * The device's descriptor-batch I/O, when it has one (a LinuxTun with native
   * TUN I/O); undefined or absent: use read()/write().
   */
  descriptorIo?(): DescriptorIo | undefined;
  /**
   * With adaptive native I/O (`--tun-io auto`): what the tuner of each thread
   * that moves this device's packets has measured (io-mode-tuner.ts); empty
   * or absent otherwise.
   */
  ioTuning?(): TunIoTuning[];
}

/**
 * A batch whose packets are described by struct pkt_desc records
 * (bpf/include/types/batch.h) in the same memory as their buffers: a Wasm
 * datapath's batch (host/wasm/batch.ts, PacketBatch.descriptorBatch). A
 * device with DescriptorIo reads into it and writes out of it in one native
 * call each, with no per-packet work in JavaScript (no views, no size
 * arrays, no verdicts read back).
 */
export interface DescriptorBatch {
  /** The whole memory, records and buffers; current at each call (a Wasm memory that grew is a new buffer). */
  memory: Uint8Array;
  /** Byte address of record 0 in `memory`. */
  descs: number;
  /** Records a read may fill (the capacity), or a write goes through (the packets decided): set before each call. */
  count: number;
  /** Where a packet starts in its buffer (a virtio_net_hdr, if any, just before). */
  headroom: number;
  /** What a read stamps on every record it fills: link | dir << 8 | flags << 16 (pkt_desc fields). */
  meta: number;
  /**
   * With a virtio_net_hdr device (offload passthrough): one word per record that a read fills in (the length read,
   * top bit set when the header carries a GSO type or a partial checksum) and the write needs, to tell a packet the
   * datapath moved and whether its header can follow it.
   */
  readInfo?: Uint32Array;
  /** With a virtio_net_hdr device: which flows a write may merge into super-packets (1: TCP, device has TSO; 2: UDP, USO). */
  gso?: number;
}

export interface DescriptorIo {
  /**
   * As read(): up to batch.count packets without blocking, each at its
   * buffer's headroom; records 0..result-1 get off = headroom, len and
   * `meta`. totals[0] = the bytes read; on a virtio_net_hdr device totals[1] =
   * the wire packets (a super-packet its segments), records with a partial
   * checksum get PKT_F_CSUM_PARTIAL and batch.readInfo is filled in. Returns
   * how many, 0 when none is ready.
   */
  readDescs(batch: DescriptorBatch, totals: Uint32Array): number;
  /**
   * Writes the packets of records from..batch.count-1 whose verdict is
   * VERDICT_PASS, each from its record's off and len (the datapath may have
   * moved it). Returns the record it stopped at: batch.count when all went,
   * fewer when the device pushed back (EAGAIN) at that record. totals =
   * [passing records in from..count-1, their bytes, packets written]. Any
   * other failure throws TunIoError, its `done` the record that failed.
   * On a virtio_net_hdr device (offload passthrough: native/tun_gso_write.c)
   * runs of one flow go out as super-packets (batch.gso) and totals has 8
   * entries: then also writes made, coalesced writes, the packets in them,
   * records not writable (moved, header could not follow: dropped) and
   * packets the kernel refused (EINVAL: skipped, the rest written).
   */
  writeDescs(batch: DescriptorBatch, from: number, totals: Uint32Array): number;
}

function checkOffset(offset: number, vnetHdr: boolean): void {
  const least = vnetHdr ? VIRTIO_NET_HDR_LEN : 0;
  if (!Number.isInteger(offset) || offset < least) {
    throw new InvalidInputError(
      vnetHdr
        ? `offset must be an integer >= ${VIRTIO_NET_HDR_LEN} (the virtio_net_hdr sits in the headroom), got ${offset}`
        : `offset must be a non-negative integer, got ${offset}`,
    );
  }
}

/**
 * Validates a read batch fully before any packet is consumed: a packet read
 * into a buffer too small would be truncated by the kernel and lost.
 */
export function checkReadBatch(dev: TunDevice, bufs: Uint8Array[], sizes: number[], offset: number): void {
  checkOffset(offset, dev.vnetHdr);
  if (sizes.length < bufs.length) {
    throw new InvalidInputError(`sizes has ${sizes.length} slots for ${bufs.length} buffers`);
  }
  for (let i = 0; i < bufs.length; i++) {
    const room = bufs[i]!.length - offset;
    if (room < dev.readCapacity) {
      throw new InvalidInputError(
        `read buffer ${i} has ${Math.max(room, 0)} bytes after offset ${offset}; ${dev.name} needs ${dev.readCapacity}`,
      );
    }
  }
}

/** Validates a write batch fully before any packet is sent (validate, then apply). */
export function checkWriteBatch(dev: TunDevice, bufs: Uint8Array[], sizes: number[], offset: number): void {
  checkOffset(offset, dev.vnetHdr);
  if (sizes.length < bufs.length) {
    throw new InvalidInputError(`sizes has ${sizes.length} entries for ${bufs.length} buffers`);
  }
  for (let i = 0; i < bufs.length; i++) {
    const size = sizes[i]!;
    if (!Number.isInteger(size) || size <= 0) throw new InvalidInputError(`sizes[${i}] must be a positive integer, got ${size}`);
    if (offset + size > bufs[i]!.length) {
      throw new InvalidInputError(`packet ${i} (offset ${offset} + size ${size}) overruns its ${bufs[i]!.length}-byte buffer`);
    }
  }
}
