/**
 * A loaded BPF program (owned by its BpfObject) and BPF_PROG_TEST_RUN: run it
 * on bytes we choose, in the kernel, without a network device. This is how
 * the differential tests feed the same packet to the Wasm core and to the
 * kernel program.
 */
import { InvalidInputError, MembraneError } from "../errors.js";
import { BpfSyscallError } from "./errors.js";
import { decodeStruct, describeErrno, encodeStruct, libbpf, type Ptr } from "./libbpf.js";
import type { FdOwner } from "./map.js";
import { SKB_CTX_SIZE } from "./skb-ctx.js";

const EINVAL = 22;
const ENOSPC = 28;

/** enum bpf_prog_type values the host treats specially (linux/bpf.h). */
export const ProgType = {
  SOCKET_FILTER: 1,
  SCHED_CLS: 3,
  SCHED_ACT: 4,
  XDP: 6,
  CGROUP_SKB: 8,
} as const;

/** Program types whose test-run ctx is a struct __sk_buff. */
const SKB_CTX_TYPES = new Set<number>([ProgType.SOCKET_FILTER, ProgType.SCHED_CLS, ProgType.SCHED_ACT, ProgType.CGROUP_SKB]);

/** Smallest packet the kernel accepts for skb test runs (an Ethernet header). */
export const ETH_HLEN = 14;

/**
 * What the kernel refuses (EINVAL) in skb test runs besides bad ctx fields,
 * measured on Linux 6.18 x86-64. The packet must fit one page with the skb's
 * headroom and shared info: PAGE_SIZE - NET_SKB_PAD - NET_IP_ALIGN -
 * SKB_DATA_ALIGN(sizeof(struct skb_shared_info)); and an IPv4/IPv6 frame
 * must hold its whole network header. Used to explain EINVAL, not to
 * pre-reject: the limits vary by kernel and page size.
 */
export const SKB_TEST_RUN_LIMITS = {
  maxData: 3712,
  minIpv4Frame: ETH_HLEN + 20,
  minIpv6Frame: ETH_HLEN + 40,
} as const;

/** Room for headers a program may push (encapsulation) when dataOutSize is not given. */
export const DEFAULT_DATA_OUT_HEADROOM = 256;

export interface TestRunInput {
  /** The packet, from the Ethernet header on for tc programs. */
  data: Uint8Array;
  /** ctx_in: for tc programs struct __sk_buff bytes (see skb-ctx.ts). */
  ctx?: Uint8Array;
  /** Runs the program this many times (>= 1); durationNs is the average. */
  repeat?: number;
  /** Capacity for the output packet; default data.length + 256. */
  dataOutSize?: number;
  /** Capacity for ctx_out; default ctx.length, or sizeof(__sk_buff) for skb programs. */
  ctxOutSize?: number;
}

export interface TestRunResult {
  /** The program's return value, as the C `int` it returned (TC_ACT_UNSPEC is -1). */
  retval: number;
  /** The packet after the program ran. */
  data: Uint8Array;
  /** ctx_out, when requested (always for skb programs). */
  ctx?: Uint8Array;
  /** Average run time per repetition, as the kernel measured it. */
  durationNs: number;
}

export class BpfProgram {
  readonly name: string;
  /** ELF section, e.g. "tc". */
  readonly sectionName: string;
  /** enum bpf_prog_type. */
  readonly type: number;

  #ptr: Ptr;
  #owner: FdOwner;

  /** Internal: built by BpfObject after a successful load. */
  constructor(ptr: Ptr, owner: FdOwner) {
    const lib = libbpf();
    this.#ptr = ptr;
    this.#owner = owner;
    this.name = lib.bpf_program__name(ptr);
    this.sectionName = lib.bpf_program__section_name(ptr);
    this.type = lib.bpf_program__type(ptr);
  }

  /** The program fd; throws once its object is closed. */
  get fd(): number {
    if (this.#owner.closed) {
      throw new MembraneError("BPF_CLOSED", `program ${this.name}: ${this.#owner.description} is closed`);
    }
    return libbpf().bpf_program__fd(this.#ptr);
  }

  /** Whether the kernel has this program: false for one left out of the load (BpfObjectLoadOptions.programs). */
  get loaded(): boolean {
    return this.fd >= 0;
  }

  /** "sched_cls", "xdp", ... as libbpf names the type. */
  get typeName(): string {
    return libbpf().libbpf_bpf_prog_type_str(this.type) ?? `type ${this.type}`;
  }

  /**
   * BPF_PROG_TEST_RUN. Side effects on maps are real. If the output does not
   * fit dataOutSize the call throws (the program has already run once, so
   * it is not retried).
   */
  testRun(input: TestRunInput): TestRunResult {
    const { data, ctx } = input;
    const skbCtx = SKB_CTX_TYPES.has(this.type);
    if (!(data instanceof Uint8Array) || data.length === 0) {
      throw new InvalidInputError(`test run of ${this.name}: data must be a non-empty Uint8Array`);
    }
    if (skbCtx && data.length < ETH_HLEN) {
      throw new InvalidInputError(`test run of ${this.name}: skb programs need at least ${ETH_HLEN} bytes (an Ethernet header), got ${data.length}`);
    }
    const repeat = input.repeat ?? 1;
    if (!Number.isInteger(repeat) || repeat < 1 || repeat > 0x7fff_ffff) {
      throw new InvalidInputError(`test run of ${this.name}: repeat must be a positive integer, got ${repeat}`);
    }
    const dataOutSize = input.dataOutSize ?? data.length + DEFAULT_DATA_OUT_HEADROOM;
    const ctxOutSize = input.ctxOutSize ?? ctx?.length ?? (skbCtx ? SKB_CTX_SIZE : 0);
    for (const [name, v] of [["dataOutSize", dataOutSize], ["ctxOutSize", ctxOutSize]] as const) {
      if (!Number.isInteger(v) || v < 0 || v > 0xffff_ffff) {
        throw new InvalidInputError(`test run of ${this.name}: ${name} must be a non-negative integer, got ${v}`);
      }
    }
    if (ctx !== undefined && !(ctx instanceof Uint8Array)) {
      throw new InvalidInputError(`test run of ${this.name}: ctx must be a Uint8Array`);
    }

    const lib = libbpf();
    const type = lib.structs.bpf_test_run_opts;
    // Off-heap copies: the kernel gets their addresses inside the opts struct.
    const dataIn = Buffer.from(data);
    // Never pass a buffer with size 0: the kernel reads 0 as "no limit".
    const dataOut = dataOutSize > 0 ? Buffer.alloc(dataOutSize) : null;
    const ctxIn = ctx && ctx.length > 0 ? Buffer.from(ctx) : null;
    const ctxOut = ctxOutSize > 0 ? Buffer.alloc(ctxOutSize) : null;
    const opts = encodeStruct(type, {
      data_in: dataIn,
      data_out: dataOut,
      data_size_in: dataIn.length,
      data_size_out: dataOutSize,
      ctx_in: ctxIn,
      ctx_out: ctxOut,
      ctx_size_in: ctxIn?.length ?? 0,
      ctx_size_out: ctxOutSize,
      repeat,
    });
    const ret = lib.bpf_prog_test_run_opts(this.fd, opts);
    const out = decodeStruct(opts, type);
    if (ret < 0) {
      let hint = "";
      if (ret === -ENOSPC) {
        hint = `: output needs ${out.data_size_out as number} bytes, dataOutSize is ${dataOutSize} (the program ran; maps may have changed)`;
      } else if (ret === -EINVAL && skbCtx) {
        hint = explainSkbEinval(data, ctxIn !== null);
      }
      throw new BpfSyscallError(`test run of ${this.name}: ${describeErrno(ret)}${hint}`, ret);
    }
    const dataLen = out.data_size_out as number;
    const ctxLen = out.ctx_size_out as number;
    return {
      retval: (out.retval as number) | 0,
      data: dataOut ? new Uint8Array(dataOut.subarray(0, Math.min(dataLen, dataOutSize))) : new Uint8Array(0),
      ctx: ctxOut ? new Uint8Array(ctxOut.subarray(0, Math.min(ctxLen, ctxOutSize))) : undefined,
      durationNs: out.duration as number,
    };
  }
}

/** The likely reason for EINVAL from an skb test run, judged from what we sent. */
function explainSkbEinval(data: Uint8Array, withCtx: boolean): string {
  const etherType = (data[12]! << 8) | data[13]!;
  const L = SKB_TEST_RUN_LIMITS;
  if (data.length > L.maxData) {
    return `: a ${data.length}-byte packet is over the kernel's skb test-run limit (${L.maxData} bytes with 4 KiB pages)`;
  }
  if (etherType === 0x0800 && data.length < L.minIpv4Frame) {
    return `: the kernel refuses IPv4 frames shorter than Ethernet + IPv4 header (${L.minIpv4Frame} bytes), got ${data.length}`;
  }
  if (etherType === 0x86dd && data.length < L.minIpv6Frame) {
    return `: the kernel refuses IPv6 frames shorter than Ethernet + IPv6 header (${L.minIpv6Frame} bytes), got ${data.length}`;
  }
  if (withCtx) {
    return (
      ": check ctx (only mark, priority, ingress_ifindex, ifindex, cb, tstamp, wire_len, gso_segs, gso_size, hwtstamp " +
      "may be set; ifindex must exist; wire_len must be 0 or at least the packet length)"
    );
  }
  return "";
}
