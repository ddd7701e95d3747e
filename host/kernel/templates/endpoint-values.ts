/**
 * An endpoint's own values as the load-time constants of bpf/lib/endpoint.h:
 * where each lives in the template's .rodata (from the object's BTF, read
 * once per template) and the bytes to write there. Byte order as the program
 * reads them: addresses in network order as the packet carries them, numbers
 * in the BPF target's (the host's, little-endian) order.
 */
import { InvalidInputError, MembraneError } from "../../errors.js";
import type { GlobalPatch } from "../../bpf/object.js";
import type { BpfObjectSpec } from "../../bpf/elf/spec.js";
import { ipBytes, parseMac } from "../../packet/address.js";
import { endpointRecords } from "../../policy/records.js";
import type { EndpointRecord } from "../../policy/types.js";

/** The endpoint's values: the policy writer's record without the enforcement flags (those are the template's shape). */
export type EndpointValues = Omit<EndpointRecord, "enforceIngress" | "enforceEgress">;

const CONSTANTS = { LXC_ID: 4, LXC_SECID: 4, LXC_IPV4: 4, LXC_IPV6: 16, LXC_MAC: 8, LXC_IFINDEX: 4 } as const;
type ConstantName = keyof typeof CONSTANTS;

/** Offset of each constant in its section, as the compiled object lays them out. */
export interface EndpointLayout {
  section: string;
  offsets: Record<ConstantName, number>;
}

/** Finds the endpoint constants in a compiled object; an object without them cannot be templated. */
export function endpointLayout(spec: BpfObjectSpec, what: string): EndpointLayout {
  const offsets = {} as Record<ConstantName, number>;
  let section: string | undefined;
  for (const [name, size] of Object.entries(CONSTANTS) as [ConstantName, number][]) {
    const g = spec.globals.find((x) => x.name === name);
    if (!g) throw new MembraneError("BPF_TEMPLATE_INVALID", `${what}: no global ${name}: the program does not include bpf/lib/endpoint.h`);
    if (g.size !== size || !g.section.startsWith(".rodata")) {
      throw new MembraneError("BPF_TEMPLATE_INVALID", `${what}: ${name} is ${g.size} bytes in ${g.section}, expected ${size} bytes of .rodata (volatile const)`);
    }
    if (section !== undefined && g.section !== section) throw new MembraneError("BPF_TEMPLATE_INVALID", `${what}: endpoint constants split across ${section} and ${g.section}`);
    section = g.section;
    offsets[name] = g.offset;
  }
  return { section: section!, offsets };
}

const u32 = (n: number) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
};

/**
 * The patches that make a template this endpoint. Validates like the policy
 * writer does (same messages), so a value the maps would refuse is refused
 * here before anything is loaded.
 */
export function endpointPatches(layout: EndpointLayout, values: EndpointValues, what = `endpoint ${JSON.stringify(values?.id)}`): GlobalPatch[] {
  // endpointRecords validates id 1..65535, identity, ifindex, MAC and addresses.
  endpointRecords({ ...values, enforceIngress: false, enforceEgress: false }, what);
  const mac = new Uint8Array(8);
  mac.set(parseMac(values.mac));
  const bytes: Record<ConstantName, Uint8Array> = {
    LXC_ID: u32(values.id),
    LXC_SECID: u32(values.identity),
    LXC_IPV4: values.ipv4 !== undefined ? ipBytes(values.ipv4, 4, `${what}: ipv4`) : new Uint8Array(4),
    LXC_IPV6: values.ipv6 !== undefined ? ipBytes(values.ipv6, 6, `${what}: ipv6`) : new Uint8Array(16),
    LXC_MAC: mac,
    LXC_IFINDEX: u32(values.ifindex),
  };
  if (bytes.LXC_IPV4.every((b) => b === 0) && bytes.LXC_IPV6.every((b) => b === 0)) {
    throw new InvalidInputError(`${what}: the unspecified address cannot be an endpoint's address`);
  }
  return (Object.keys(bytes) as ConstantName[]).map((name) => ({ section: layout.section, offset: layout.offsets[name], bytes: bytes[name] }));
}
