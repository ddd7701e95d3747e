/**
 * The kernel datapath on real interfaces: bpf_lxc on a pod's veth (host side),
 * bpf_host on the node's device, attached with tc, maps pinned under
 * membrane's bpffs directory so `membrane bpf ct list` (and a restarted
 * agent) can read them. The clock map stays 0: the program uses the kernel's
 * monotonic clock, and whoever runs GC on these maps must use it too.
 */
import { readFileSync } from "node:fs";
import { BpfObject } from "../bpf/object.js";
import { attachTc, interfaceIndex, type TcAttachment } from "../bpf/tc.js";
import { pinDir as defaultPinDir } from "../bpf/bpffs.js";
import { resolveOptions, type DatapathOptions } from "../config.js";
import { loadConfiguredObject } from "./load.js";
import { bpfObjectPath } from "../tools/build-bpf.js";
import { NotSupportedError, wrap } from "../errors.js";

export type AttachPoint = "endpoint" | "netdev";

/** Program per tc direction: ingress of the host-side veth is what the pod sends. */
const PROGRAMS: Record<AttachPoint, { object: "bpf_lxc" | "bpf_host"; ingress: string; egress: string }> = {
  endpoint: { object: "bpf_lxc", ingress: "from_container", egress: "to_container" },
  netdev: { object: "bpf_host", ingress: "from_netdev", egress: "to_netdev" },
};

export interface AttachOptions {
  /** Interface to attach to. */
  ifname: string;
  point: AttachPoint;
  options?: DatapathOptions;
  /** Where maps are pinned (default: membrane's bpffs directory). */
  pinDir?: string;
  /** Reuse maps already pinned there, keeping their entries. */
  reusePinned?: boolean;
}

export class AttachedDatapath {
  private constructor(readonly object: BpfObject, readonly attachments: TcAttachment[], readonly pinDir: string) {}

  static attach(opts: AttachOptions): AttachedDatapath {
    const spec = PROGRAMS[opts.point];
    const resolved = resolveOptions(opts.options ?? {});
    const path = bpfObjectPath(spec.object);
    let elf: Uint8Array;
    try {
      elf = readFileSync(path);
    } catch (err) {
      throw new NotSupportedError(`attach to ${opts.ifname}: ${path} is missing; install clang and libbpf-dev, then run \`npm run build\``, { cause: err });
    }
    const ifindex = interfaceIndex(opts.ifname);
    const dir = opts.pinDir ?? defaultPinDir();
    let object: BpfObject;
    try {
      object = loadConfiguredObject(elf, resolved, { name: spec.object, pinDir: dir, reusePinned: opts.reusePinned });
    } catch (err) {
      throw wrap(`attach ${spec.object} to ${opts.ifname}`, err);
    }
    const attachments: TcAttachment[] = [];
    try {
      attachments.push(attachTc(object.program(spec.ingress), { ifindex, direction: "ingress" }));
      attachments.push(attachTc(object.program(spec.egress), { ifindex, direction: "egress" }));
      return new AttachedDatapath(object, attachments, dir);
    } catch (err) {
      for (const a of attachments) a.detach();
      object.close();
      throw wrap(`attach ${spec.object} to ${opts.ifname}`, err);
    }
  }

  /** Detaches from tc and closes the object. Pinned maps stay (unpin them to remove). */
  detach(): void {
    for (const a of this.attachments) a.detach();
    this.object.close();
  }
}
