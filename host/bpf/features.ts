/**
 * What the kernel datapath needs from this machine, probed without side
 * effects: the bpf(2) syscall, kernel BTF, LRU hash maps, BPF_PROG_TEST_RUN
 * and tc clsact. Callers decide what they require; a missing feature becomes
 * a NotSupportedError that says what to do.
 */
import { existsSync } from "node:fs";
import { MembraneError, NotSupportedError } from "../errors.js";
import { errnoName } from "../sys/errno.js";
import { describeErrno, encodeStruct, libbpf } from "./libbpf.js";
import { CLONE_NEWNET, libc, O_CLOEXEC, O_RDONLY } from "../sys/libc.js";
import { ProgType } from "./program.js";
import { MapType } from "./map.js";
import { BPF_TC_INGRESS } from "./tc.js";

export type BpfFeature = "bpfSyscall" | "btf" | "lruMaps" | "testRun" | "clsact";

export const BPF_FEATURES: readonly BpfFeature[] = ["bpfSyscall", "btf", "lruMaps", "testRun", "clsact"];

export interface FeatureStatus {
  ok: boolean;
  /** When not ok: what is missing and what to do. */
  detail?: string;
}

export type BpfFeatures = Record<BpfFeature, FeatureStatus>;

export const VMLINUX_BTF = "/sys/kernel/btf/vmlinux";

const ok: FeatureStatus = { ok: true };

/**
 * Probes every feature and returns the results. Throws NotSupportedError if
 * any feature in `require` (default: all) is missing; pass [] to only report.
 * Without libbpf itself, throws NotSupportedError from the bindings.
 */
export function probeBpf(require: readonly BpfFeature[] = BPF_FEATURES): BpfFeatures {
  const lib = libbpf();
  const syscall = probeSyscall();
  const features: BpfFeatures = {
    bpfSyscall: syscall,
    btf: existsSync(VMLINUX_BTF)
      ? ok
      : { ok: false, detail: `kernel BTF missing (${VMLINUX_BTF}): use a kernel built with CONFIG_DEBUG_INFO_BTF=y` },
    lruMaps: syscall.ok ? probeLru() : { ok: false, detail: "not probed: bpf(2) unavailable" },
    testRun: syscall.ok ? probeTestRun() : { ok: false, detail: "not probed: bpf(2) unavailable" },
    clsact: syscall.ok ? probeClsact() : { ok: false, detail: "not probed: bpf(2) unavailable" },
  };
  const missing = require.filter((f) => !features[f].ok);
  if (missing.length > 0) {
    throw new NotSupportedError(missing.map((f) => `${f}: ${features[f].detail}`).join("; "));
  }
  return features;
}

/**
 * Creates (and closes) a one-entry hash map. Done directly rather than with
 * libbpf_probe_bpf_map_type, which reports EPERM as "unsupported" and so
 * cannot tell "not root" from "no BPF in this kernel".
 */
function probeSyscall(): FeatureStatus {
  const fd = libbpf().bpf_map_create(MapType.HASH, "membrane_probe", 4, 4, 1, null);
  if (fd >= 0) {
    libc().close(fd);
    return ok;
  }
  if (fd === -1 || fd === -13) {
    return {
      ok: false,
      detail:
        `bpf(2) denied (${errnoName(fd)}): run as root, or grant CAP_BPF and CAP_NET_ADMIN ` +
        "(unprivileged BPF is normally disabled: kernel.unprivileged_bpf_disabled)",
    };
  }
  if (fd === -38) return { ok: false, detail: "bpf(2) missing (ENOSYS): use a kernel built with CONFIG_BPF_SYSCALL=y" };
  return { ok: false, detail: `bpf(2) cannot create a hash map (${describeErrno(fd)})` };
}

function probeLru(): FeatureStatus {
  const ret = libbpf().libbpf_probe_bpf_map_type(MapType.LRU_HASH, null);
  if (ret === 1) return ok;
  return {
    ok: false,
    detail: `LRU hash maps unsupported (${ret < 0 ? describeErrno(ret) : "kernel too old"}): conntrack needs Linux >= 4.10`,
  };
}

/** "r0 = 0; exit": the smallest valid program, as two struct bpf_insn. */
const RETURN_ZERO = new Uint8Array([0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]);

function probeTestRun(): FeatureStatus {
  const lib = libbpf();
  const fd = lib.bpf_prog_load(ProgType.SCHED_CLS, "membrane_probe", "GPL", RETURN_ZERO, 2, null);
  if (fd < 0) {
    return { ok: false, detail: `cannot load a sched_cls program (${describeErrno(fd)}): kernel needs CONFIG_NET_CLS_BPF` };
  }
  try {
    const data = Buffer.alloc(14);
    const opts = encodeStruct(lib.structs.bpf_test_run_opts, { data_in: data, data_size_in: data.length, repeat: 1 });
    const ret = lib.bpf_prog_test_run_opts(fd, opts);
    if (ret === 0) return ok;
    return { ok: false, detail: `BPF_PROG_TEST_RUN failed (${describeErrno(ret)}): needs Linux >= 4.12` };
  } finally {
    libc().close(fd);
  }
}

/**
 * Creates a clsact qdisc on the loopback device of a scratch network
 * namespace: the only way to know tc works is to use it, and doing so in a
 * fresh namespace touches no real interface. unshare/setns move only the
 * calling thread, and nothing else runs on it meanwhile (the calls are
 * synchronous); the namespace disappears when we leave it.
 */
function probeClsact(): FeatureStatus {
  const c = libc();
  const self = c.open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0) return { ok: false, detail: `not probed: cannot open /proc/thread-self/ns/net (${errnoName(c.errno())})` };
  try {
    if (c.unshare(CLONE_NEWNET) !== 0) {
      return { ok: false, detail: `not probed: cannot create a scratch network namespace (${errnoName(c.errno())}): run as root` };
    }
    let ret: number;
    try {
      // In a new namespace, lo is ifindex 1.
      ret = libbpf().bpf_tc_hook_create(encodeStruct(libbpf().structs.bpf_tc_hook, { ifindex: 1, attach_point: BPF_TC_INGRESS }));
    } finally {
      if (c.setns(self, CLONE_NEWNET) !== 0) {
        // Continuing in the wrong namespace would silently misdirect every later netlink call.
        throw new MembraneError("INTERNAL", `probe clsact: cannot return to the original network namespace (${errnoName(c.errno())})`);
      }
    }
    if (ret === 0 || ret === -17) return ok;
    return {
      ok: false,
      detail: `cannot create a clsact qdisc (${describeErrno(ret)}): kernel needs CONFIG_NET_SCH_INGRESS and CONFIG_NET_CLS_BPF`,
    };
  } finally {
    c.close(self);
  }
}
