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
