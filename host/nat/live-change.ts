/**
 * Which NAT configuration a running datapath can take. The core sized its
 * NAT tables at start, so the entries and the families masqueraded are fixed
 * until a restart; the masquerade address of a family with live mappings is
 * fixed too, because the replies of those flows come back to the old one.
 * Prefixes, ports, retries and the seed apply from the next packet on.
 */
import { InvalidInputError, NotSupportedError } from "../errors.js";
import { resolveNat, type ResolvedNat } from "./config.js";
import { parseIp } from "../packet/address.js";

const sameAddress = (a: string, b: string) => Buffer.from(parseIp(a).bytes).equals(Buffer.from(parseIp(b).bytes));

/** Mappings (pairs) each family's table holds now. */
export interface NatMappingCounts {
  ipv4: number;
  ipv6: number;
}

/**
 * Validates `input` (the `nat` options, whole) as a change to `running`;
 * returns it resolved, or throws naming the key. Nothing is written.
 */
export function resolveLiveNat(input: unknown, running: ResolvedNat | undefined, mappings: NatMappingCounts, path = "nat"): ResolvedNat {
  if (!running) {
    throw new NotSupportedError(`${path}: NAT is off in this datapath and its tables are created at start; set nat in the datapath options and restart the forwarder`);
  }
  // Without a seed resolveNat draws a random one; a change that does not name one keeps the running seed.
  const withSeed = typeof input === "object" && input !== null && !Array.isArray(input) && !("seed" in input) ? { ...input, seed: running.seed } : input;
  const next = resolveNat(withSeed, path);
  if (next === undefined) throw new InvalidInputError(`${path}: required`);
  if (next.entries !== running.entries) {
    throw new InvalidInputError(`${path}.entries: ${next.entries} differs from the running tables' ${running.entries}; table sizes are fixed until the forwarder restarts`);
  }
  for (const fam of ["ipv4", "ipv6"] as const) {
    const was = running[fam];
    const now = next[fam];
    if (now && !was) throw new InvalidInputError(`${path}.${fam}: ${fam} was not masqueraded at start, so it has no NAT table; restart the forwarder to add it`);
    if (was && !now) throw new InvalidInputError(`${path}.${fam}: required: ${fam} is masqueraded and stays so until a restart (its mappings' replies need it)`);
    if (was && now && !sameAddress(was.address, now.address) && mappings[fam] > 0) {
      throw new InvalidInputError(`${path}.${fam}.address: ${mappings[fam]} mappings use ${was.address}, whose replies would no longer be translated; flush conntrack first or keep the address`);
    }
  }
  return next;
}
