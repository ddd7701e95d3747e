// The batch entry point: decides every packet of a batch in place.
import {
  CT_EGRESS, CT_NEW, CT_NONE, DIR_AUTO, DROP_INVALID, DROP_NONE, PKT_DESC_BUF, PKT_DESC_BUF_SIZE, PKT_DESC_CT_RESULT,
  PKT_DESC_CT_TABLE, PKT_DESC_DIR, PKT_DESC_DROP_REASON, PKT_DESC_FLAGS, PKT_F_CSUM_PARTIAL, PKT_DESC_LEN, PKT_DESC_LINK, PKT_DESC_OFF, PKT_DESC_SIZE,
  PKT_DESC_VERDICT, VERDICT_DROP, VERDICT_PASS,
} from "./generated/layout";
import { PARSE_UNTRACKED, parsePacket } from "./parse";
import { fragProcess } from "./frag";
import { ctCreate, ctDir, ctEntry, ctLookup, ctResult, ctTableId } from "./conntrack";
import { policyNewFlow, policyPeerIngress, policyStoreIdentity } from "./policy";
import { count } from "./metrics";
import { setCsumPartialMode } from "./checksum";
import { lbAfterCt, lbForward } from "./lb";
import { natStage } from "./nat";

function finish(d: usize, verdict: i32, reason: i32, dir: i32, result: i32, tableId: i32, len: u32): void {
  store<u8>(d + PKT_DESC_VERDICT, <u8>verdict);
  store<u8>(d + PKT_DESC_DROP_REASON, <u8>reason);
  store<u8>(d + PKT_DESC_DIR, <u8>dir);
  store<u8>(d + PKT_DESC_CT_RESULT, <u8>result);
  store<u8>(d + PKT_DESC_CT_TABLE, <u8>tableId);
  count(reason, dir, len);
}

/** A descriptor whose packet lies outside its buffer or outside memory is dropped, not trusted. */
function descriptorValid(d: usize, memEnd: u64): bool {
  const buf = <u64>load<u32>(d + PKT_DESC_BUF);
  const size = <u64>load<u32>(d + PKT_DESC_BUF_SIZE);
  const off = <u64>load<u32>(d + PKT_DESC_OFF);
  const len = <u64>load<u32>(d + PKT_DESC_LEN);
  return buf + size <= memEnd && off + len <= size;
}

function processOne(d: usize, now: u32, memEnd: u64): void {
  const len = load<u32>(d + PKT_DESC_LEN);
  const dirIn = <i32>load<u8>(d + PKT_DESC_DIR);
  const fallbackDir = dirIn == DIR_AUTO ? CT_EGRESS : dirIn;
  if (!descriptorValid(d, memEnd)) {
    finish(d, VERDICT_DROP, DROP_INVALID, fallbackDir, CT_NONE, 0, len);
    return;
  }
  const start = <usize>load<u32>(d + PKT_DESC_BUF) + <usize>load<u32>(d + PKT_DESC_OFF);
  setCsumPartialMode((load<u8>(d + PKT_DESC_FLAGS) & PKT_F_CSUM_PARTIAL) != 0);
  let reason = parsePacket(start, len, <i32>load<u8>(d + PKT_DESC_LINK));
  if (reason == PARSE_UNTRACKED) {
    finish(d, VERDICT_PASS, DROP_NONE, fallbackDir, CT_NONE, 0, len);
    return;
  }
  if (reason == 0) reason = fragProcess(now);
  if (reason != 0) {
    finish(d, VERDICT_DROP, reason, fallbackDir, CT_NONE, 0, len);
    return;
  }
  reason = lbForward(now);
  if (reason != 0) {
    finish(d, VERDICT_DROP, reason, fallbackDir, CT_NONE, 0, len);
    return;
  }
  reason = ctLookup(dirIn, now);
  // A new flow is decided here, before its entry exists. Policy comes first: it
  // judges the packet as the endpoint sent it, and a refused flow takes no NAT port.
  if (reason == 0 && ctResult == CT_NEW) reason = policyNewFlow(ctDir);
  if (reason == 0 && ctResult == CT_NEW && dirIn == DIR_AUTO && ctDir == CT_EGRESS) reason = policyPeerIngress();
  // SNAT may translate a reply back and look it up again (then no longer CT_NEW).
  reason = natStage(reason, dirIn, now);
  if (reason == 0 && ctResult == CT_NEW) reason = ctCreate(now);
  if (reason == 0 && ctResult == CT_NEW) policyStoreIdentity(ctEntry);
  if (reason == 0) reason = lbAfterCt();
  if (reason != 0) {
    finish(d, VERDICT_DROP, reason, ctDir, ctResult, ctTableId, len);
    return;
  }
  finish(d, VERDICT_PASS, DROP_NONE, ctDir, ctResult, ctTableId, len);
}

/** Decides `count` packets described at `desc` (struct pkt_desc[]) with the datapath clock `now` (seconds). */
export function processBatch(desc: usize, count: i32, now: u32): void {
  const memEnd = <u64>memory.size() << 16;
  for (let i = 0; i < count; i++) processOne(desc + <usize>i * PKT_DESC_SIZE, now, memEnd);
}

/** Parses only (for benchmarks): returns how many packets parsed as trackable. */
export function parseBatch(desc: usize, count: i32): i32 {
  const memEnd = <u64>memory.size() << 16;
  let ok = 0;
  for (let i = 0; i < count; i++) {
    const d = desc + <usize>i * PKT_DESC_SIZE;
    if (!descriptorValid(d, memEnd)) continue;
    const start = <usize>load<u32>(d + PKT_DESC_BUF) + <usize>load<u32>(d + PKT_DESC_OFF);
    if (parsePacket(start, load<u32>(d + PKT_DESC_LEN), <i32>load<u8>(d + PKT_DESC_LINK)) == 0) ok++;
  }
  return ok;
}
