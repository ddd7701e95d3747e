/**
 * KernelDatapath: the kernel program (bpf/bpf_test.c) as a datapath engine.
 * Each packet goes through BPF_PROG_TEST_RUN with its direction in skb->cb[0];
 * the program leaves its decision in cb[0]/cb[1]. The clock is the program's
 * clock map, so lifetimes are computed from the same `now` as in Wasm. Maps are
 * read back through the same layouts the Wasm tables use.
 */
import { readFileSync } from "node:fs";
import { resolveOptions, type DatapathOptions, type ResolvedOptions } from "../config.js";
import { BpfObject, type GlobalPatch } from "../bpf/object.js";
import { SKB_TEST_RUN_LIMITS, ETH_HLEN, type BpfProgram } from "../bpf/program.js";
import { decodeSkbCtx, encodeSkbCtx } from "../bpf/skb-ctx.js";
import { bpfObjectPath } from "../tools/build-bpf.js";
import { DIRECTION_CODE, type PacketMeta } from "../engine.js";
import { describeVerdict, type PacketVerdict } from "../verdict.js";
import type { DatapathEngine, PacketInput } from "../engine.js";
import { CT_TABLES, decodeCtRecord, joinRecord, type CtRecord, type CtTableName } from "../conntrack/records.js";
import type { DatapathCounters, GcResult } from "../engine.js";
import type { TableName } from "../conntrack/tables.js";
import { TABLE_NAMES } from "../conntrack/tables.js";
import {
  CT_ENTRY, FRAG_ENTRY,
} from "../generated/layout.js";
import { MembraneError, NotSupportedError, wrap } from "../errors.js";
import { KERNEL_MAP_OF } from "./maps.js";
import { loadConfiguredObject, setKernelClock } from "./load.js";
import { KernelPolicyTables } from "./policy-tables.js";
import { KernelLbTables } from "./lb-tables.js";
import { KernelNat } from "./nat-tables.js";
import { KernelMonitorRing } from "./monitor-ring.js";
import { readKernelCounters } from "./counters.js";



/** The frame the kernel runs: raw IP packets get an Ethernet header (and lose it on the way out). */
function toFrame(packet: Uint8Array, link: PacketMeta["link"]): Uint8Array {
  if (link === "ethernet") return packet;
  const frame = new Uint8Array(ETH_HLEN + packet.length);
  const version = packet.length > 0 ? packet[0] >> 4 : 0;
  // An unknown version gets an unknown ethertype, so both datapaths say DROP_UNKNOWN_L3.
  const etherType = version === 4 ? 0x0800 : version === 6 ? 0x86dd : 0x0000;
  frame[12] = etherType >> 8;
  frame[13] = etherType & 0xff;
  frame.set(packet, ETH_HLEN);
  return frame;
}

/**
 * Why BPF_PROG_TEST_RUN would refuse this frame, or undefined. The kernel wants
 * at least an Ethernet header, the whole IPv4/IPv6 header for those ethertypes,
 * and at most a page of data; a real tc hook never sees such frames either.
 */
export function testRunRefuses(frame: Uint8Array): string | undefined {
  const L = SKB_TEST_RUN_LIMITS;
  if (frame.length < ETH_HLEN) return `a ${frame.length}-byte frame is shorter than an Ethernet header`;
  if (frame.length > L.maxData) return `a ${frame.length}-byte frame is over the kernel's test-run limit of ${L.maxData} bytes`;
  const etherType = (frame[12] << 8) | frame[13];
  if (etherType === 0x0800 && frame.length < L.minIpv4Frame) return `an IPv4 frame of ${frame.length} bytes has no room for an IPv4 header`;
  if (etherType === 0x86dd && frame.length < L.minIpv6Frame) return `an IPv6 frame of ${frame.length} bytes has no room for an IPv6 header`;
  return undefined;
}

export interface KernelDatapathOptions {
  /** Compiled object (default build/bpf/bpf_test.o). */
  objectPath?: string;
  /** The compiled object's bytes, instead of objectPath (e.g. a template). */
  elf?: Uint8Array;
  /** Values for globals before load (a template's endpoint constants). */
  globals?: readonly GlobalPatch[];
  /**
   * Programs of an attach-point object (bpf_lxc, bpf_host), whose direction is
   * fixed by where they attach: egress packets run `egress`, ingress packets
   * `ingress`, and "auto" has no program. Default: bpf_test's test_process,
   * which takes the direction in skb->cb[0].
   */
  programs?: { egress: string; ingress: string };
}

export class KernelDatapath implements DatapathEngine {
  readonly engine = "bpf" as const;
  private clockNow = -1;
  private readonly program: BpfProgram;
  private readonly byDirection?: { egress: BpfProgram; ingress: BpfProgram };
  /** SNAT maps: list, flush, stats, GC (host/nat/tables.ts). */
  readonly nat: KernelNat;
  private monitorRing?: KernelMonitorRing;

  /** The programs' monitor ring buffer (off until configured): host/kernel/monitor-ring.ts. */
  monitor(): KernelMonitorRing {
    return (this.monitorRing ??= new KernelMonitorRing(this.object));
  }

  private constructor(readonly options: ResolvedOptions, private readonly object: BpfObject, programs?: { egress: string; ingress: string }) {
    if (programs) this.byDirection = { egress: object.program(programs.egress), ingress: object.program(programs.ingress) };
    this.program = this.byDirection?.egress ?? object.program("test_process");
    this.nat = new KernelNat(object);
  }

  /**
   * Wraps an object loaded elsewhere (e.g. a template instance on pinned maps,
   * whose per-endpoint programs tail-call installed stages), sized from
   * `options`; the datapath owns it from here and closes it.
   */
  static fromObject(options: DatapathOptions, object: BpfObject, programs?: { egress: string; ingress: string }): KernelDatapath {
    return new KernelDatapath(resolveOptions(options), object, programs);
  }

  static async create(options: DatapathOptions = {}, kernel: KernelDatapathOptions = {}): Promise<KernelDatapath> {
    const resolved = resolveOptions(options);
    const path = kernel.objectPath ?? bpfObjectPath("bpf_test");
    let elf: Uint8Array;
    try {
      elf = kernel.elf ?? readFileSync(path);
    } catch (err) {
      throw new NotSupportedError(`load the kernel datapath: ${path} is missing; install clang and libbpf-dev, then run \`npm run build\``, { cause: err });
    }
    let object: BpfObject;
    try {
      object = loadConfiguredObject(elf, resolved, { name: "membrane", globals: kernel.globals });
    } catch (err) {
      throw wrap("load the kernel datapath", err);
    }
    try {
      return new KernelDatapath(resolved, object, kernel.programs);
    } catch (err) {
      object.close();
      throw err;
    }
  }

  private setClock(now: number): void {
    if (now === this.clockNow) return;
    // 0 would mean "use the kernel clock": the datapath clock never reads 0 here.
    if (!Number.isInteger(now) || now < 1 || now > 0xffffffff) {
      throw new MembraneError("INVALID_INPUT", `kernel datapath clock must be 1..2^32-1 seconds, got ${now}`);
    }
    setKernelClock(this.object, now);
    this.clockNow = now;
  }

  decide(packet: Uint8Array, meta: PacketMeta & { now: number }): PacketVerdict {
    this.setClock(meta.now);
    const frame = toFrame(packet, meta.link);
    const refused = testRunRefuses(frame);
    if (refused) throw new NotSupportedError(`kernel test run: ${refused}; the kernel does not run such a frame`);
    let program = this.program;
    if (this.byDirection) {
      const dir = meta.direction ?? "auto";
      if (dir === "auto") throw new MembraneError("INVALID_INPUT", "kernel datapath: an attach-point program needs each packet's direction (egress or ingress), got auto");
      program = this.byDirection[dir];
    }
    const run = program.testRun({ data: frame, ctx: encodeSkbCtx({ cb: [DIRECTION_CODE[meta.direction ?? "auto"]] }) });
    const cb = decodeSkbCtx(run.ctx!).cb;
    const desc = {
      verdict: cb[0] & 0xff, dropReason: (cb[0] >>> 8) & 0xff, ctResult: (cb[0] >>> 16) & 0xff, dir: (cb[0] >>> 24) & 0xff,
      ctTable: cb[1] & 0xff,
    };
    const expectedRet = desc.verdict === 0 ? 0 : 2; // TC_ACT_OK / TC_ACT_SHOT
    if (run.retval !== expectedRet) {
      throw new MembraneError("BPF_INCONSISTENT", `kernel test run returned ${run.retval} for verdict ${desc.verdict}`);
    }
    return describeVerdict(desc, meta.link === "ethernet" ? run.data : run.data.subarray(ETH_HLEN));
  }

  decideAll(packets: readonly PacketInput[], now: number): PacketVerdict[] {
    return packets.map((p) => this.decide(p.data, { link: p.link, direction: p.direction, now }));
  }

  /** Conntrack entries in the kernel's iteration order (callers sort to compare). */
  *conntrack(table?: CtTableName): Generator<CtRecord> {
    for (const name of table ? [table] : CT_TABLES) {
      for (const [key, value] of this.object.map(KERNEL_MAP_OF[name]).dump()) yield decodeCtRecord(name, joinRecord(key, value));
    }
  }

  /** Raw records (key then value) of a table, as Datapath.dumpTable gives them. */
  dumpTable(table: TableName): Uint8Array[] {
    return this.object.map(KERNEL_MAP_OF[table]).dump().map(([k, v]) => joinRecord(k, v));
  }

  /** Deletes expired entries (lifetime before `now`) from every table, as the Wasm GC does. */
  gc(now: number): GcResult[] {
    const results = this.gcConntrack(now);
    this.nat.gc(now); // NAT pairs go with their conntrack entries
    return results;
  }

  private gcConntrack(now: number): GcResult[] {
    return TABLE_NAMES.map((table) => {
      const map = this.object.map(KERNEL_MAP_OF[table]);
      const lifetimeAt = table.startsWith("frag") ? FRAG_ENTRY.offsets.lifetime : CT_ENTRY.offsets.lifetime;
      const entries = map.dump();
      let deleted = 0;
      for (const [key, value] of entries) {
        const lifetime = new DataView(value.buffer, value.byteOffset).getUint32(lifetimeAt, true);
        if (lifetime < now && map.delete(key)) deleted++;
      }
      return { table, deleted, scanned: entries.length };
    });
  }

  flush(): void {
    for (const table of TABLE_NAMES) this.object.map(KERNEL_MAP_OF[table]).clear();
    this.nat.flush();
  }

  counters(): DatapathCounters {
    return readKernelCounters(this.object);
  }

  /** Endpoints, ipcache and policy maps (written through host/policy/datapath-writer). */
  policyTables(): KernelPolicyTables {
    return new KernelPolicyTables(this.object);
  }

  lbTables(): KernelLbTables {
    return new KernelLbTables(this.object, this.options.lb);
  }

  close(): void {
    this.monitorRing?.close();
    this.object.close();
  }
}

