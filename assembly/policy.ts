// Identity-based policy on the new-flow path (bpf/lib/policy.h is the same in C).
// For a CT_NEW packet: the local endpoint is the source on egress and the
// destination on ingress; a packet with no local endpoint on that side is not
// policed. The remote identity comes from the ipcache (longest prefix; a miss is
// the reserved identity world). An endpoint that does not enforce the
// direction allows. Otherwise the policy table is probed, most specific key
// first: (identity, port, proto), (identity, any port), (any identity, port),
// (any, any), then the same four with any protocol. The first deny found drops
// (deny wins); else the first allow found passes; nothing found drops. Only
// TCP and UDP have ports: ICMP flows match entries with port 0 only.
import {
  CT_EGRESS, CT_ENTRY_SRC_SEC_ID, CT_INGRESS, DROP_POLICY, ENDPOINT_F_ENFORCE_EGRESS, ENDPOINT_F_ENFORCE_INGRESS,
  ENDPOINT_INFO_FLAGS, ENDPOINT_INFO_ID, ENDPOINT_INFO_SIZE, ENDPOINT_KEY4_SIZE, ENDPOINT_KEY6_SIZE, IDENTITY_WORLD,
  IPCACHE_VALUE_SEC_ID, IPCACHE_VALUE_SIZE, POLICY_CONFIG_ENDPOINT_MAX, POLICY_CONFIG_IPCACHE_MAX,
  POLICY_CONFIG_POLICY_MAX, POLICY_CONFIG_SIZE, POLICY_ENTRY_DENY, POLICY_ENTRY_HITS, POLICY_ENTRY_SIZE,
  POLICY_KEY_DIR, POLICY_KEY_DPORT, POLICY_KEY_ENDPOINT_ID, POLICY_KEY_PROTO, POLICY_KEY_SEC_ID, POLICY_KEY_SIZE,
} from "./generated/layout";
import { PROTO_TCP, PROTO_UDP, pDaddr, pDport, pFamily, pProto, pSaddr } from "./parse";
import { Table, slotAddr, tableCreate, tableLookup } from "./table";
import { Lpm, lpmCreate, lpmLookup } from "./lpm";
import { cfgHashSeed } from "./config";

/** Where the host writes struct policy_config before init. */
export const policyConfigArea = memory.data(POLICY_CONFIG_SIZE, 8);

export let endpoints4: Table = changetype<Table>(0);
export let endpoints6: Table = changetype<Table>(0);
export let ipcache4: Lpm = changetype<Lpm>(0);
export let ipcache6: Lpm = changetype<Lpm>(0);
export let policyTable: Table = changetype<Table>(0);

/** Creates the policy tables from the policy configuration; false when memory runs out. */
export function createPolicyTables(): bool {
  const endpointMax = load<u32>(policyConfigArea + POLICY_CONFIG_ENDPOINT_MAX);
  const ipcacheMax = load<u32>(policyConfigArea + POLICY_CONFIG_IPCACHE_MAX);
  const policyMax = load<u32>(policyConfigArea + POLICY_CONFIG_POLICY_MAX);
  const seed = ((<u64>cfgHashSeed << 32) | <u64>cfgHashSeed) ^ 0x2545F4914F6CDD1D;
  const e4 = tableCreate(endpointMax, ENDPOINT_KEY4_SIZE, ENDPOINT_INFO_SIZE, seed);
  const e6 = tableCreate(endpointMax, ENDPOINT_KEY6_SIZE, ENDPOINT_INFO_SIZE, seed + 1);
  const i4 = lpmCreate(ipcacheMax, 4, IPCACHE_VALUE_SIZE, seed + 2);
  const i6 = lpmCreate(ipcacheMax, 16, IPCACHE_VALUE_SIZE, seed + 3);
  const pt = tableCreate(policyMax, POLICY_KEY_SIZE, POLICY_ENTRY_SIZE, seed + 4);
  if (e4 === null || e6 === null || i4 === null || i6 === null || pt === null) return false;
  endpoints4 = e4;
  endpoints6 = e6;
  ipcache4 = i4;
  ipcache6 = i6;
  policyTable = pt;
  return true;
}

// Zero-padded scratch keys of the packet path.
const endpointKey = memory.data(16, 16);
const policyKey = memory.data(16, 16);

/** The endpoint_info of the local endpoint at `addr`, or 0. */
function endpointAt(addr: usize): usize {
  const t = pFamily == 4 ? endpoints4 : endpoints6;
  // The whole padded word: an IPv6 lookup before may have left bytes behind the IPv4 key.
  if (pFamily == 4) store<u64>(endpointKey, <u64>load<u32>(addr));
  else memory.copy(endpointKey, addr, 16);
  const idx = tableLookup(t, endpointKey);
  return idx == 0 ? 0 : slotAddr(t, idx);
}

/** Security identity of the `family` address at `addr`: its longest ipcache prefix, else world. */
export function identityOf(family: i32, addr: usize): u32 {
  const v = lpmLookup(family == 4 ? ipcache4 : ipcache6, addr);
  return v == 0 ? IDENTITY_WORLD : load<u32>(v + IPCACHE_VALUE_SEC_ID);
}

/** The entry under (identity, port, proto) in the prepared key, or 0. */
function probe(identity: u32, port: u16, proto: i32): usize {
  store<u32>(policyKey + POLICY_KEY_SEC_ID, identity);
  store<u16>(policyKey + POLICY_KEY_DPORT, port);
  store<u8>(policyKey + POLICY_KEY_PROTO, <u8>proto);
  const idx = tableLookup(policyTable, policyKey);
  return idx == 0 ? 0 : slotAddr(policyTable, idx);
}

function hit(entry: usize): void {
  store<u64>(entry + POLICY_ENTRY_HITS, load<u64>(entry + POLICY_ENTRY_HITS) + 1);
}

/** Outcome of the most specific-first probe: the deciding entry (0: none) and whether it denies. */
let decidingEntry: usize = 0;
let decidingDeny = false;

/** Tries one candidate key; true when the search is over (a deny). */
function consider(identity: u32, port: u16, proto: i32): bool {
  const e = probe(identity, port, proto);
  if (e == 0) return false;
  if (load<u8>(e + POLICY_ENTRY_DENY) != 0) {
    decidingEntry = e;
    decidingDeny = true;
    return true;
  }
  if (decidingEntry == 0) decidingEntry = e;
  return false;
}

/** The four identity/port combinations for one protocol value, most specific first; true on a deny. */
function considerProto(identity: u32, port: u16, proto: i32): bool {
  if (port != 0 && consider(identity, port, proto)) return true;
  if (consider(identity, 0, proto)) return true;
  if (port != 0 && consider(0, port, proto)) return true;
  return consider(0, 0, proto);
}

/** Decides a flow of `endpointId` with `identity` in `dir`: 0 or DROP_POLICY. */
export function policyDecide(endpointId: u16, identity: u32, port: u16, proto: i32, dir: i32): i32 {
  store<u64>(policyKey + 8, 0);
  store<u16>(policyKey + POLICY_KEY_ENDPOINT_ID, endpointId);
  store<u8>(policyKey + POLICY_KEY_DIR, <u8>dir);
  decidingEntry = 0;
  decidingDeny = false;
  if (!considerProto(identity, port, proto)) considerProto(identity, port, 0);
  if (decidingEntry == 0) return DROP_POLICY;
  hit(decidingEntry);
  return decidingDeny ? DROP_POLICY : 0;
}

// ---- the flow being decided, between policyNewFlow and policyStoreIdentity ----
let flowPoliced = false;
let flowIdentity: u32 = 0;

/**
 * Policy for a CT_NEW packet in direction `dir` (after ctLookup, before
 * ctCreate): 0 to let the flow be created, or DROP_POLICY.
 */
export function policyNewFlow(dir: i32): i32 {
  flowPoliced = false;
  if (dir != CT_EGRESS && dir != CT_INGRESS) return 0;
  const egress = dir == CT_EGRESS;
  const ep = endpointAt(egress ? pSaddr : pDaddr);
  if (ep == 0) return 0;
  flowPoliced = true;
  flowIdentity = identityOf(pFamily, egress ? pDaddr : pSaddr);
  const enforce = egress ? ENDPOINT_F_ENFORCE_EGRESS : ENDPOINT_F_ENFORCE_INGRESS;
  if ((<i32>load<u8>(ep + ENDPOINT_INFO_FLAGS) & enforce) == 0) return 0;
  const port: u16 = pProto == PROTO_TCP || pProto == PROTO_UDP ? pDport : 0;
  return policyDecide(load<u16>(ep + ENDPOINT_INFO_ID), flowIdentity, port, pProto, dir);
}

/**
 * With DIR_AUTO the datapath sits between both ends of a flow (the TUN
 * forwarder routes for every endpoint of its node, and for packets arriving
 * from other nodes): a new flow classified egress was judged by policyNewFlow
 * on its source's egress policy only, and that source may be on another node.
 * Its destination, when local, judges it too, by its ingress policy against
 * the source's identity from the ipcache (the identity recorded in the entry
 * when the source was not local). bpf/lib/policy.h policy_peer_ingress.
 */
export function policyPeerIngress(): i32 {
  const ep = endpointAt(pDaddr);
  if (ep == 0) return 0;
  const identity = identityOf(pFamily, pSaddr);
  if (!flowPoliced) {
    flowPoliced = true;
    flowIdentity = identity;
  }
  if ((<i32>load<u8>(ep + ENDPOINT_INFO_FLAGS) & ENDPOINT_F_ENFORCE_INGRESS) == 0) return 0;
  const port: u16 = pProto == PROTO_TCP || pProto == PROTO_UDP ? pDport : 0;
  return policyDecide(load<u16>(ep + ENDPOINT_INFO_ID), identity, port, pProto, CT_INGRESS);
}

/** Records the remote identity in the entry ctCreate just made for the flow policyNewFlow saw. */
export function policyStoreIdentity(entry: usize): void {
  if (flowPoliced && entry != 0) store<u32>(entry + CT_ENTRY_SRC_SEC_ID, flowIdentity);
}
