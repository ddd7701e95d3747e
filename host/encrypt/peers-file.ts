/**
 * Static peers, for nodes without a kvstore: a JSON file listing the other
 * nodes, their underlay address, their pod CIDRs and the key index each
 * advertises, which is what their node records would say:
 *
 *   { "peers": [ { "name": "node2", "address": "192.168.1.2",
 *                  "cidrs": ["10.2.0.0/24"], "keyIndex": 3 } ] }
 *
 * Whoever updates the file plays the control plane's part of a rolling key
 * update: it raises a peer's keyIndex only once that peer has installed the
 * key (`membrane encrypt status` on the peer shows it). Errors name the file
 * and the field; a bad file changes nothing.
 */
import { InvalidInputError } from "../errors.js";
import { integerInRange } from "../config-values.js";
import { parsePrefix } from "../packet/cidr.js";
import { parseIp } from "../packet/address.js";
import type { Peer } from "./tunnel.js";

/** A peer as the file (and the forwarder's "peers" command) spells it: addresses and CIDRs as text. */
export interface PeerSpec {
  name: string;
  address: string;
  cidrs: string[];
  keyIndex: number;
}

export function parsePeersFile(text: string, file: string): Peer[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new InvalidInputError(`${file}: not JSON: ${(err as Error).message}`);
  }
  return parsePeerList((doc as { peers?: unknown })?.peers, `${file}: peers`);
}

/** A list of peers, checked whole: `at` names where it came from in every error ("<file>: peers", "peers.peers"). */
export function parsePeerList(list: unknown, at: string): Peer[] {
  if (!Array.isArray(list)) throw new InvalidInputError(`${at}: expected a list of peers`);
  const names = new Set<string>();
  return list.map((p: unknown, i): Peer => {
    const here = `${at}[${i}]`;
    if (typeof p !== "object" || p === null) throw new InvalidInputError(`${here}: expected an object`);
    const o = p as Record<string, unknown>;
    for (const k of Object.keys(o)) if (!["name", "address", "cidrs", "keyIndex"].includes(k)) throw new InvalidInputError(`${here}.${k}: unknown field (name, address, cidrs, keyIndex)`);
    if (typeof o.name !== "string" || !o.name) throw new InvalidInputError(`${here}.name: expected a non-empty string`);
    if (names.has(o.name)) throw new InvalidInputError(`${here}.name: "${o.name}" is listed twice`);
    names.add(o.name);
    if (typeof o.address !== "string") throw new InvalidInputError(`${here}.address: expected an IPv4 address`);
    try {
      if (parseIp(o.address).family !== 4) throw new Error("the ESP path's outer header is IPv4");
    } catch (err) {
      throw new InvalidInputError(`${here}.address: ${(err as Error).message}`);
    }
    if (!Array.isArray(o.cidrs) || o.cidrs.length === 0) throw new InvalidInputError(`${here}.cidrs: expected a non-empty list of pod CIDRs`);
    const cidrs = o.cidrs.map((c, j) => parsePrefix(c, `${here}.cidrs[${j}]`));
    const keyIndex = integerInRange(o.keyIndex ?? 0, 0, 15, `${here}.keyIndex`);
    return { name: o.name, address: o.address, cidrs, keyIndex };
  });
}
