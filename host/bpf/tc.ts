/**
 * Attaching programs to tc (clsact ingress/egress) of an interface, through
 * libbpf's bpf_tc_* calls, which speak rtnetlink themselves. Filters are
 * attached in direct-action mode: the program's return value is the verdict.
 *
 * The clsact qdisc ("hook") is created when missing. It is destroyed on detach
 * only if this process created it and none of this process's attachments still
 * use it; a hook that existed before us (Cilium, another tool) is left alone.
 */
import { InvalidInputError, MembraneError } from "../errors.js";
import { BpfSyscallError } from "./errors.js";
import { captureLibbpfLog } from "./libbpf-log.js";
import { decodeStruct, describeErrno, encodeStruct, libbpf } from "./libbpf.js";
import { libc } from "../sys/libc.js";
import { ProgType, type BpfProgram } from "./program.js";
import { currentNetnsId, openCurrentNetns, withNetnsFd } from "../sys/netns/enter.js";

const ENOENT = 2;
const EEXIST = 17;
const ENODEV = 19;

/** enum bpf_tc_attach_point (libbpf.h). */
export const BPF_TC_INGRESS = 1;
export const BPF_TC_EGRESS = 2;
/** enum bpf_tc_flags. */
export const BPF_TC_F_REPLACE = 1;

export type TcDirection = "ingress" | "egress";

export interface TcAttachOptions {
  ifindex: number;
  direction: TcDirection;
  /** Filter priority (1..65535); 0 or unset lets the kernel choose. */
  priority?: number;
  /** Filter handle; 0 or unset lets the kernel choose. */
  handle?: number;
  /** Replace a filter with the same handle and priority instead of failing. */
  replace?: boolean;
}

/**
 * Hooks per interface: whether we created the clsact, and how many of our
 * attachments use it. Keyed by network namespace and ifindex: the same
 * ifindex names different devices in different namespaces.
 */
const hooks = new Map<string, { created: boolean; users: number }>();

const hookKey = (netns: string, ifindex: number) => `${netns}/${ifindex}`;

function hookStruct(ifindex: number, attachPoint: number): Buffer {
  return encodeStruct(libbpf().structs.bpf_tc_hook, { ifindex, attach_point: attachPoint });
}

/**
 * One attached filter. detach() removes it (idempotent), from the network
 * namespace it was attached in, whichever namespace the caller is in then.
 */
export class TcAttachment {
  readonly ifindex: number;
  /** currentNetnsId() of the namespace the interface is in. */
  readonly netns: string;
  readonly direction: TcDirection;
  readonly handle: number;
  readonly priority: number;
  /** Kernel id of the attached program. */
  readonly progId: number;
  #attached = true;
  /** An fd on that namespace, held until detach. */
  #netnsFd: number;

  /** Internal: made by attachTc. */
  constructor(ifindex: number, netns: string, netnsFd: number, direction: TcDirection, handle: number, priority: number, progId: number) {
    this.ifindex = ifindex;
    this.netns = netns;
    this.#netnsFd = netnsFd;
    this.direction = direction;
    this.handle = handle;
    this.priority = priority;
    this.progId = progId;
  }

  get attached(): boolean {
    return this.#attached;
  }

  /**
   * Removes the filter; a filter or interface that is already gone counts as
   * detached. Then releases the clsact hook if we created it and are its last user.
   */
  detach(): void {
    if (!this.#attached) return;
    if (currentNetnsId() === this.netns) this.#detachHere();
    else withNetnsFd(this.#netnsFd, `of ifindex ${this.ifindex}`, () => this.#detachHere());
    libc().close(this.#netnsFd);
    this.#netnsFd = -1;
  }

  /**
   * Forgets this attachment without removing its filter: for a filter that
   * was replaced in place (a newer attachment with replace at the same handle
   * and priority now owns it) or that is meant to outlive this process (an
   * agent restarting hands its endpoints' filters to the next instance). The
   * clsact hook is never removed here.
   */
  abandon(): void {
    if (!this.#attached) return;
    this.#attached = false;
    const entry = hooks.get(hookKey(this.netns, this.ifindex));
    if (entry) entry.users = Math.max(0, entry.users - 1);
    libc().close(this.#netnsFd);
    this.#netnsFd = -1;
  }

  #detachHere(): void {
    const lib = libbpf();
    const action = `detach tc ${this.direction} filter from ifindex ${this.ifindex}`;
    captureLibbpfLog((log) => {
      const hook = hookStruct(this.ifindex, this.direction === "ingress" ? BPF_TC_INGRESS : BPF_TC_EGRESS);
      // Detach identifies the filter by handle and priority only; prog fields must be zero.
      const opts = encodeStruct(lib.structs.bpf_tc_opts, { handle: this.handle, priority: this.priority });
      const ret = lib.bpf_tc_detach(hook, opts);
      if (ret < 0 && ret !== -ENOENT && ret !== -ENODEV) {
        throw new BpfSyscallError(`${action}: ${describeErrno(ret)}`, ret, log.text("warn"));
      }
      this.#attached = false;
      const key = hookKey(this.netns, this.ifindex);
      const entry = hooks.get(key);
      if (!entry) return;
      entry.users -= 1;
      if (entry.users > 0) return;
      hooks.delete(key);
      if (!entry.created) return;
      // INGRESS|EGRESS together means "delete the clsact qdisc" to libbpf.
      const r = lib.bpf_tc_hook_destroy(hookStruct(this.ifindex, BPF_TC_INGRESS | BPF_TC_EGRESS));
      if (r < 0 && r !== -ENOENT && r !== -ENODEV && r !== -22) {
        throw new BpfSyscallError(`${action}: remove clsact qdisc: ${describeErrno(r)}`, r, log.text("warn"));
      }
    });
  }
}

/** Attaches `program` (a sched_cls program, SEC("tc")) to clsact ingress or egress of an interface. */
export function attachTc(program: BpfProgram, opts: TcAttachOptions): TcAttachment {
  const { ifindex, direction } = opts;
  if (!Number.isInteger(ifindex) || ifindex < 1) throw new InvalidInputError(`tc attach: ifindex must be a positive integer, got ${ifindex}`);
  if (direction !== "ingress" && direction !== "egress") {
    throw new InvalidInputError(`tc attach: direction must be ingress or egress, got ${String(direction)}`);
  }
  const priority = opts.priority ?? 0;
  const handle = opts.handle ?? 0;
  if (!Number.isInteger(priority) || priority < 0 || priority > 0xffff) {
    throw new InvalidInputError(`tc attach: priority must be 0..65535, got ${priority}`);
  }
  if (!Number.isInteger(handle) || handle < 0 || handle > 0xffff_ffff) throw new InvalidInputError(`tc attach: bad handle ${handle}`);
  if (program.type !== ProgType.SCHED_CLS) {
    throw new InvalidInputError(`tc attach: program ${program.name} is a ${program.typeName} program; tc needs sched_cls (SEC("tc"))`);
  }

  const action = `attach program ${program.name} to tc ${direction} of ifindex ${ifindex}`;
  const netns = currentNetnsId();
  const key = hookKey(netns, ifindex);
  // Taken first: once the filter is attached nothing may fail before the attachment is returned.
  const netnsFd = openCurrentNetns();
  try {
    return attachIn(program, opts, action, key, netns, netnsFd);
  } catch (err) {
    libc().close(netnsFd);
    throw err;
  }
}

function attachIn(program: BpfProgram, opts: TcAttachOptions, action: string, key: string, netns: string, netnsFd: number): TcAttachment {
  const lib = libbpf();
  const { ifindex, direction } = opts;
  const priority = opts.priority ?? 0;
  const handle = opts.handle ?? 0;
  return captureLibbpfLog((log) => {
    let entry = hooks.get(key);
    let createdNow = false;
    if (!entry) {
      const ret = lib.bpf_tc_hook_create(hookStruct(ifindex, BPF_TC_INGRESS));
      if (ret < 0 && ret !== -EEXIST) {
        const hint = ret === -ENODEV ? ": no such interface" : ret === -1 ? ": need CAP_NET_ADMIN (run as root)" : "";
        throw new BpfSyscallError(`${action}: create clsact qdisc: ${describeErrno(ret)}${hint}`, ret, log.text("warn"));
      }
      createdNow = ret === 0;
      entry = { created: createdNow, users: 0 };
    }
    const hook = hookStruct(ifindex, direction === "ingress" ? BPF_TC_INGRESS : BPF_TC_EGRESS);
    const type = lib.structs.bpf_tc_opts;
    const tcOpts = encodeStruct(type, {
      prog_fd: program.fd,
      flags: opts.replace ? BPF_TC_F_REPLACE : 0,
      handle,
      priority,
    });
    const ret = lib.bpf_tc_attach(hook, tcOpts);
    if (ret < 0) {
      if (createdNow) lib.bpf_tc_hook_destroy(hookStruct(ifindex, BPF_TC_INGRESS | BPF_TC_EGRESS));
      const hint = ret === -EEXIST ? ": a filter with this handle and priority exists (use replace)" : "";
      throw new BpfSyscallError(`${action}: ${describeErrno(ret)}${hint}`, ret, log.text("warn"));
    }
    entry.users += 1;
    hooks.set(key, entry);
    const out = decodeStruct(tcOpts, type);
    return new TcAttachment(ifindex, netns, netnsFd, direction, out.handle as number, out.priority as number, out.prog_id as number);
  });
}

/**
 * Removes the filter at `handle`/`priority` on one hook of `ifindex` (in this
 * namespace) that no TcAttachment here holds: one a previous agent left for
 * an endpoint that is gone. A filter or interface already gone is not an
 * error; returns whether a filter was removed. The clsact qdisc stays.
 */
export function detachTcFilter(ifindex: number, direction: TcDirection, filter: { handle: number; priority: number }): boolean {
  const lib = libbpf();
  const action = `detach tc ${direction} filter ${filter.handle}/${filter.priority} from ifindex ${ifindex}`;
  return captureLibbpfLog((log) => {
    const hook = hookStruct(ifindex, direction === "ingress" ? BPF_TC_INGRESS : BPF_TC_EGRESS);
    const opts = encodeStruct(lib.structs.bpf_tc_opts, { handle: filter.handle, priority: filter.priority });
    const ret = lib.bpf_tc_detach(hook, opts);
    if (ret === -ENOENT || ret === -ENODEV || ret === -22) return false;
    if (ret < 0) throw new BpfSyscallError(`${action}: ${describeErrno(ret)}`, ret, log.text("warn"));
    return true;
  });
}

/** The ifindex of interface `name` in this process's network namespace. */
export function interfaceIndex(name: string): number {
  if (typeof name !== "string" || name.length === 0 || name.length > 15) {
    throw new InvalidInputError(`interface name must be 1-15 characters, got ${JSON.stringify(name)}`);
  }
  const index = libc().if_nametoindex(name);
  if (index === 0) throw new MembraneError("NOT_FOUND", `no interface named ${name}`);
  return index;
}
