// The monitor's event ring in linear memory: struct monitor_config, then
// `capacity` struct monitor_event. The datapath appends drop, trace and
// policy-verdict events while the mode asks for them; the host drains the
// ring once per batch (count back to 0) and refills the budget, which is how
// its rate cap reaches the packet path. Off (mode 0, or never created) costs
// one load and a branch per packet.
import {
  MONITOR_CAP_BYTES, MONITOR_CONFIG_BUDGET, MONITOR_CONFIG_CAPACITY, MONITOR_CONFIG_COUNT, MONITOR_CONFIG_LOST, MONITOR_CONFIG_MODE,
  MONITOR_CONFIG_SAMPLE, MONITOR_CONFIG_SEEN, MONITOR_CONFIG_SIZE, MONITOR_DROP, MONITOR_EVENT_CAP_LEN, MONITOR_EVENT_CT_RESULT,
  MONITOR_EVENT_DATA, MONITOR_EVENT_DIR, MONITOR_EVENT_IDENTITY, MONITOR_EVENT_LEN, MONITOR_EVENT_LINK, MONITOR_EVENT_REASON,
  MONITOR_EVENT_SIZE, MONITOR_EVENT_TYPE, MONITOR_F_DROP, MONITOR_F_POLICY, MONITOR_F_TRACE, MONITOR_POLICY_VERDICT, MONITOR_TRACE,
  PKT_DESC_BUF, PKT_DESC_BUF_SIZE, PKT_DESC_LEN, PKT_DESC_LINK, PKT_DESC_OFF, VERDICT_PASS,
} from "./generated/layout";
import { regionAlloc } from "./region";

let monitorBase: usize = 0;

/** Creates the ring (once; later calls return the same one). Returns the config's address, 0 when memory cannot grow. */
export function monitor_create(capacity: u32): usize {
  if (monitorBase != 0) return monitorBase;
  if (capacity == 0 || capacity > 1 << 20) return 0;
  const base = regionAlloc(<u64>MONITOR_CONFIG_SIZE + <u64>capacity * MONITOR_EVENT_SIZE);
  if (base == 0) return 0;
  store<u32>(base + MONITOR_CONFIG_CAPACITY, capacity);
  monitorBase = base;
  return base;
}

/** One event slot, or 0 when the ring is full or the budget spent (counted as lost). */
function reserve(): usize {
  const count = load<u32>(monitorBase + MONITOR_CONFIG_COUNT);
  const budget = load<u32>(monitorBase + MONITOR_CONFIG_BUDGET);
  if (budget == 0 || count >= load<u32>(monitorBase + MONITOR_CONFIG_CAPACITY)) {
    store<u32>(monitorBase + MONITOR_CONFIG_LOST, load<u32>(monitorBase + MONITOR_CONFIG_LOST) + 1);
    return 0;
  }
  store<u32>(monitorBase + MONITOR_CONFIG_BUDGET, budget - 1);
  store<u32>(monitorBase + MONITOR_CONFIG_COUNT, count + 1);
  return monitorBase + MONITOR_CONFIG_SIZE + <usize>count * MONITOR_EVENT_SIZE;
}

function write(e: usize, d: usize, type: i32, reason: i32, dir: i32, result: i32, len: u32, identity: u32): void {
  store<u8>(e + MONITOR_EVENT_TYPE, <u8>type);
  store<u8>(e + MONITOR_EVENT_REASON, <u8>reason);
  store<u8>(e + MONITOR_EVENT_DIR, <u8>dir);
  store<u8>(e + MONITOR_EVENT_CT_RESULT, <u8>result);
  store<u8>(e + MONITOR_EVENT_LINK, load<u8>(d + PKT_DESC_LINK));
  store<u32>(e + MONITOR_EVENT_LEN, len);
  store<u32>(e + MONITOR_EVENT_IDENTITY, identity);
  // Only bytes inside the packet's own buffer are copied: a descriptor pointing elsewhere carries none.
  const buf = <u64>load<u32>(d + PKT_DESC_BUF);
  const size = <u64>load<u32>(d + PKT_DESC_BUF_SIZE);
  const off = <u64>load<u32>(d + PKT_DESC_OFF);
  let cap: u64 = <u64>len < <u64>MONITOR_CAP_BYTES ? <u64>len : <u64>MONITOR_CAP_BYTES;
  if (buf + size > (<u64>memory.size() << 16) || off + cap > size) cap = 0;
  store<u16>(e + MONITOR_EVENT_CAP_LEN, <u16>cap);
  if (cap > 0) memory.copy(e + MONITOR_EVENT_DATA, <usize>(buf + off), <usize>cap);
}

/** A packet's decision (from finish()): a drop event, or a sampled trace event for one that passed. */
export function monitorPacket(d: usize, verdict: i32, reason: i32, dir: i32, result: i32, len: u32): void {
  if (monitorBase == 0) return;
  const mode = load<u32>(monitorBase + MONITOR_CONFIG_MODE);
  if (mode == 0) return;
  let type = MONITOR_DROP;
  if (verdict == VERDICT_PASS) {
    if ((mode & MONITOR_F_TRACE) == 0) return;
    const seen = load<u32>(monitorBase + MONITOR_CONFIG_SEEN) + 1;
    store<u32>(monitorBase + MONITOR_CONFIG_SEEN, seen);
    const sample = load<u32>(monitorBase + MONITOR_CONFIG_SAMPLE);
    if (sample > 1 && seen % sample != 0) return;
    type = MONITOR_TRACE;
  } else if ((mode & MONITOR_F_DROP) == 0) return;
  const e = reserve();
  if (e != 0) write(e, d, type, reason, dir, result, len, 0);
}

/** A new flow's policy decision (right after policyNewFlow), when a local endpoint was on its side. */
export function monitorPolicyVerdict(d: usize, policed: bool, reason: i32, dir: i32, result: i32, identity: u32): void {
  if (monitorBase == 0 || !policed) return;
  if ((load<u32>(monitorBase + MONITOR_CONFIG_MODE) & MONITOR_F_POLICY) == 0) return;
  const e = reserve();
  if (e != 0) write(e, d, MONITOR_POLICY_VERDICT, reason, dir, result, load<u32>(d + PKT_DESC_LEN), identity);
}
