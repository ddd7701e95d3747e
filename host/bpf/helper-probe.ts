/**
 * Whether this kernel lets tc programs call a BPF helper, asked the kernel
 * itself (libbpf_probe_bpf_helper loads a tiny program calling it), so a
 * datapath stage that needs a newer kernel fails up front with the helper and
 * the kernel version it arrived in, instead of a verifier error about an
 * unknown function deep inside a load.
 */
import { release } from "node:os";
import { NotSupportedError } from "../errors.js";
import { describeErrno, libbpf } from "./libbpf.js";
import { ProgType } from "./program.js";

export interface HelperInfo {
  /** enum bpf_func_id. */
  id: number;
  name: string;
  /** First Linux release with it. */
  since: string;
  /** What of membrane needs it. */
  usedBy: string;
}

export const HELPERS = {
  loop: { id: 181, name: "bpf_loop", since: "5.17", usedBy: "the SNAT stage (port allocation tries candidates in a bpf_loop)" },
} as const satisfies Record<string, HelperInfo>;

const known = new Map<number, boolean>();

/** Whether sched_cls programs may call `helper` here (cached per process). */
export function helperSupported(helper: HelperInfo): boolean {
  const cached = known.get(helper.id);
  if (cached !== undefined) return cached;
  const r = libbpf().libbpf_probe_bpf_helper(ProgType.SCHED_CLS, helper.id, null);
  if (r < 0) throw new NotSupportedError(`probe BPF helper ${helper.name}: ${describeErrno(r)}`);
  known.set(helper.id, r === 1);
  return r === 1;
}

/** Throws NotSupportedError naming the helper, its minimum kernel and this kernel when `helper` is missing. */
export function requireHelper(what: string, helper: HelperInfo): void {
  if (helperSupported(helper)) return;
  throw new NotSupportedError(
    `${what}: this kernel (${release()}) lacks the BPF helper ${helper.name}, which ${helper.usedBy} needs: Linux ${helper.since} or newer; ` +
      "or leave that stage out of the template (nat: false) and masquerade elsewhere",
  );
}
