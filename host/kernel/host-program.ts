/**
 * bpf_host (generic: it serves every endpoint) on the node's external
 * device, sharing the node's pinned maps, at the endpoints' fixed tc handle
 * and priority with replace, so a restarted agent swaps it in place like the
 * endpoint programs (host/kernel/templates/endpoint-programs.ts).
 */
import { readFileSync } from "node:fs";
import type { ResolvedOptions } from "../config.js";
import type { BpfObject } from "../bpf/object.js";
import { HELPERS, requireHelper } from "../bpf/helper-probe.js";
import { attachTc, interfaceIndex, type TcAttachment } from "../bpf/tc.js";
import { wrap } from "../errors.js";
import { withNetns } from "../sys/netns/enter.js";
import { bpfObjectPath } from "../tools/build-bpf.js";
import { loadConfiguredObject } from "./load.js";
import { ENDPOINT_FILTER, type EndpointDevice } from "./templates/endpoint-programs.js";

export interface AttachedHostProgram {
  object: BpfObject;
  attachments: TcAttachment[];
}

export function attachHostProgram(dev: EndpointDevice, resolved: ResolvedOptions, pinDir: string): AttachedHostProgram {
  const what = `attach bpf_host to ${dev.ifname}`;
  if (resolved.nat) requireHelper(what, HELPERS.loop);
  let object: BpfObject;
  try {
    object = loadConfiguredObject(readFileSync(bpfObjectPath("bpf_host")), resolved, { name: "bpf_host", pinDir, reusePinned: true });
  } catch (err) {
    throw wrap(what, err);
  }
  const attachments: TcAttachment[] = [];
  try {
    const attach = () => {
      const ifindex = interfaceIndex(dev.ifname);
      attachments.push(attachTc(object.program("from_netdev"), { ifindex, direction: "ingress", ...ENDPOINT_FILTER, replace: true }));
      attachments.push(attachTc(object.program("to_netdev"), { ifindex, direction: "egress", ...ENDPOINT_FILTER, replace: true }));
    };
    if (dev.netns) withNetns(dev.netns, attach);
    else attach();
    return { object, attachments };
  } catch (err) {
    for (const a of attachments) a.detach();
    object.close();
    throw wrap(what, err);
  }
}
