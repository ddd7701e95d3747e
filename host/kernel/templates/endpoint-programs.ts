/**
 * Endpoint programs on real veths, from templates: each endpoint gets the
 * template of its shape instantiated with its own values, from_container at
 * tc ingress and to_container at tc egress of its host-side veth, every
 * instance sharing the node's maps through their pins. Changing an
 * endpoint's values (a new identity, a new address) instantiates again
 * without compiling and swaps the filters in place (tc replace at the same
 * handle and priority), so there is no moment without a program on the
 * device; the conntrack entries live in the pinned maps, so established
 * connections go on. Removing an endpoint detaches its filters.
 *
 * The filters hold the programs, not this process: release() leaves them
 * attached for a restarted agent, whose upsert() replaces them in place the
 * same way.
 */
import { resolveOptions, type DatapathOptions, type ResolvedOptions } from "../../config.js";
import type { BpfObject } from "../../bpf/object.js";
import { attachTc, interfaceIndex, type TcAttachment, type TcDirection } from "../../bpf/tc.js";
import { InvalidInputError, wrap } from "../../errors.js";
import { withNetns } from "../../sys/netns/enter.js";
import type { TemplateCache } from "./cache.js";
import type { EndpointValues } from "./endpoint-values.js";
import type { TemplateShape } from "./shape.js";

/** Fixed filter identity, so any instance (and any later agent) can replace it in place. */
export const ENDPOINT_FILTER = { handle: 1, priority: 1 } as const;
const PROGRAMS: Record<TcDirection, string> = { ingress: "from_container", egress: "to_container" };

export interface EndpointDevice {
  /** The host side of the endpoint's veth. */
  ifname: string;
  /** The namespace that device is in (undefined: this process's). */
  netns?: string;
}

export interface LiveEndpoint {
  values: EndpointValues;
  device: EndpointDevice;
  key: string;
  object: BpfObject;
  attachments: TcAttachment[];
}

export interface UpsertResult {
  key: string;
  /** The template had to be compiled for this call. */
  compiled: boolean;
  /** Filters already on the device were replaced in place (not attached anew). */
  replaced: boolean;
  progIds: number[];
}

export interface TemplatedEndpointsOptions {
  cache: TemplateCache;
  /** Map sizes and configuration, as for every kernel object. */
  options?: DatapathOptions;
  /** Where the node's maps are pinned (shared by every endpoint). */
  pinDir: string;
}

export class TemplatedEndpoints {
  readonly #live = new Map<number, LiveEndpoint>();
  readonly #resolved: ResolvedOptions;

  constructor(private readonly opts: TemplatedEndpointsOptions) {
    this.#resolved = resolveOptions(opts.options ?? {});
  }

  get endpoints(): ReadonlyMap<number, LiveEndpoint> {
    return this.#live;
  }

  /** Instantiates and attaches (or re-instantiates and replaces) endpoint `values.id`'s programs. */
  async upsert(values: EndpointValues, device: EndpointDevice, shape: Partial<TemplateShape> = {}): Promise<UpsertResult> {
    const what = `endpoint ${JSON.stringify(values?.id)} on ${device?.ifname}`;
    if (typeof device?.ifname !== "string") throw new InvalidInputError(`${what}: device.ifname: expected an interface name`);
    const compilesBefore = this.opts.cache.stats.compiles;
    const template = await this.opts.cache.get("bpf_lxc", shape);
    const compiled = this.opts.cache.stats.compiles > compilesBefore;
    // Validates the values (and loads) before anything on the device changes.
    const object = template.instantiate(values, this.#resolved, { name: `lxc_${values.id}`, pinDir: this.opts.pinDir, reusePinned: true });
    const previous = this.#live.get(values.id);
    const inNs = <T>(fn: () => T): T => (device.netns ? withNetns(device.netns, fn) : fn());
    const attachments: TcAttachment[] = [];
    let replaced = false;
    try {
      inNs(() => {
        const ifindex = interfaceIndex(device.ifname);
        for (const direction of ["ingress", "egress"] as const) {
          // replace: true attaches where nothing is, and swaps the program where our filter already is.
          const a = attachTc(object.program(PROGRAMS[direction]), { ifindex, direction, ...ENDPOINT_FILTER, replace: true });
          attachments.push(a);
        }
      });
    } catch (err) {
      // A half-swapped endpoint (ingress new, egress old) still has a program on both hooks; say so.
      object.close();
      throw wrap(`attach ${what}`, err);
    }
    if (previous) {
      replaced = true;
      for (const a of previous.attachments) a.abandon(); // their filters now run the new programs
      previous.object.close();
    }
    this.#live.set(values.id, { values, device, key: template.key, object, attachments });
    this.opts.cache.recordEndpoint(template.key, values);
    return { key: template.key, compiled, replaced, progIds: attachments.map((a) => a.progId) };
  }

  /** Detaches endpoint `id`'s filters and forgets it. Its entries in the shared maps stay (the policy writer owns them). */
  remove(id: number): boolean {
    const live = this.#live.get(id);
    if (!live) return false;
    for (const a of live.attachments) a.detach();
    live.object.close();
    this.#live.delete(id);
    this.opts.cache.forgetEndpoint(id);
    return true;
  }

  /** Lets go of every endpoint without detaching: the filters keep running for the next agent. */
  release(): void {
    for (const live of this.#live.values()) {
      for (const a of live.attachments) a.abandon();
      live.object.close();
    }
    this.#live.clear();
  }
}
