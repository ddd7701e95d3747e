/**
 * The kernel's IPsec tables over netlink: states (SAs) and policies, with
 * Cilium's marks. The messages are host/encrypt/xfrm-codec.ts; the socket is
 * host/sys/netlink-socket.ts.
 *
 * Cilium's marks: an output packet carries its SPI in bits 12..15 of the
 * mark, (spi << 12) | 0x0E00 under mask 0xFF00; decrypted input is marked
 * 0x0D00 under 0x0F00.
 */
import { NotSupportedError } from "../errors.js";
import { NETLINK_XFRM, NetlinkError, NetlinkSocket, NLM_F } from "../sys/netlink-socket.js";
import { withScratchNetns } from "../sys/netns/enter.js";
import {
  XFRM_MSG, decodePolicy, decodeSa, encodePolicy, encodePolicyId, encodeSa, encodeSaId,
  type DecodedPolicy, type DecodedSa, type Mark, type PolicyId, type PolicySpec, type SaId, type SaSpec,
} from "./xfrm-codec.js";

export const MARK_MASK_OUT = 0xff00;
export const MARK_MASK_IN = 0x0f00;
export function outputMark(spi: number): Mark {
  return { value: ((spi & 0xf) << 12) | 0x0e00, mask: MARK_MASK_OUT };
}
export const INPUT_MARK: Mark = { value: 0x0d00, mask: MARK_MASK_IN };

/** What the agent says when the kernel cannot hold ESP states. */
export const KERNEL_ESP_MISSING =
  "kernel lacks ESP with AES-GCM (CONFIG_INET_ESP, CONFIG_CRYPTO_GCM, CONFIG_XFRM_USER): using userspace encryption on the TUN path";

export class Xfrm {
  private constructor(private readonly socket: NetlinkSocket) {}

  static open(): Xfrm {
    return new Xfrm(NetlinkSocket.open(NETLINK_XFRM));
  }

  /** Installs a state, replacing one with the same (dst, SPI, proto). */
  installSa(sa: SaSpec): void {
    try {
      this.socket.request(XFRM_MSG.UPDSA, 0, encodeSa(sa), `install xfrm state spi ${sa.spi} ${sa.src} -> ${sa.dst}`);
    } catch (err) {
      throw espMissing(err) ? new NotSupportedError(`${KERNEL_ESP_MISSING}: ${(err as Error).message}`, { cause: err }) : err;
    }
  }

  deleteSa(id: SaId): void {
    this.socket.request(XFRM_MSG.DELSA, 0, encodeSaId(id), `delete xfrm state spi ${id.spi} -> ${id.dst}`);
  }

  listSas(): DecodedSa[] {
    return this.socket.request(XFRM_MSG.GETSA, NLM_F.DUMP, new Uint8Array(0), "list xfrm states").filter((m) => m.type === XFRM_MSG.NEWSA).map((m) => decodeSa(m.payload));
  }

  /** Installs or replaces a policy (UPDPOLICY). */
  upsertPolicy(p: PolicySpec): void {
    this.socket.request(XFRM_MSG.UPDPOLICY, 0, encodePolicy(p), `install xfrm policy ${p.dir} ${p.selector.src} -> ${p.selector.dst}`);
  }

  deletePolicy(id: PolicyId): void {
    this.socket.request(XFRM_MSG.DELPOLICY, 0, encodePolicyId(id), `delete xfrm policy ${id.dir} ${id.selector.src} -> ${id.selector.dst}`);
  }

  listPolicies(): DecodedPolicy[] {
    return this.socket
      .request(XFRM_MSG.GETPOLICY, NLM_F.DUMP, new Uint8Array(0), "list xfrm policies")
      .filter((m) => m.type === XFRM_MSG.NEWPOLICY)
      .map((m) => decodePolicy(m.payload));
  }

  close(): void {
    this.socket.close();
  }
}

/** ENOENT with "algorithm not found", EPROTONOSUPPORT, ENOSYS: the kernel has no ESP or no GCM. */
function espMissing(err: unknown): boolean {
  if (!(err instanceof NetlinkError)) return false;
  return ["EPROTONOSUPPORT", "ENOSYS", "ENOPROTOOPT"].includes(err.errnoCode) || /algorithm not found/i.test(err.kernelMessage ?? "");
}

/**
 * Whether this kernel can hold an ESP state with AES-GCM: tried for real in
 * a scratch network namespace (nothing is left behind). undefined: it can;
 * otherwise the reason, for NotSupportedError and the agent's start line.
 */
export function probeKernelEsp(): string | undefined {
  try {
    withScratchNetns(() => {
      const x = Xfrm.open();
      try {
        x.installSa({
          src: "192.0.2.1", dst: "192.0.2.2", spi: 0x100, reqid: 1, mode: "tunnel",
          aead: { name: "rfc4106(gcm(aes))", key: new Uint8Array(20), icvBits: 128 },
        });
      } finally {
        x.close();
      }
    });
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}
