// Fragment tracking. Only the first fragment of a datagram carries the L4
// header; it records the ports under (addresses, id, protocol) so the later
// fragments join the same conntrack flow. A later fragment that arrives before
// its first fragment (or after the entry expired) is dropped with
// DROP_FRAG_NOSUPPORT. The tables always evict their oldest datagram when full:
// a stale datagram is worth less than a new one.
import {
  DROP_FRAG_NOSUPPORT, FRAG_ENTRY_DPORT, FRAG_ENTRY_LIFETIME, FRAG_ENTRY_PROTO, FRAG_ENTRY_SPORT, FRAG_KEY4_DADDR, FRAG_KEY4_ID,
  FRAG_KEY4_PROTO, FRAG_KEY4_SADDR, FRAG_KEY6_DADDR, FRAG_KEY6_ID, FRAG_KEY6_PROTO, FRAG_KEY6_SADDR,
  CT_STATS_CREATED, CT_STATS_EVICTED,
} from "./generated/layout";
import { cfgFragTimeout } from "./config";
import { FRAG_LATER, FRAG_NONE, pDaddr, pDport, pFamily, pFrag, pFragId, pFragProto, pIcmpError, pProto, pSaddr, pSport } from "./parse";
import * as parse from "./parse";
import { slotAddr, tableInsert, tableLookup, tableVictim, tableRemove } from "./table";
import { TABLE_FRAG4, TABLE_FRAG6, statsOf, table } from "./tables";

const fragKey = memory.data(48, 16);

function writeKey(): void {
  memory.fill(fragKey, 0, 40);
  if (pFamily == 4) {
    store<u32>(fragKey + FRAG_KEY4_SADDR, load<u32>(pSaddr));
    store<u32>(fragKey + FRAG_KEY4_DADDR, load<u32>(pDaddr));
    store<u16>(fragKey + FRAG_KEY4_ID, <u16>pFragId);
    store<u8>(fragKey + FRAG_KEY4_PROTO, <u8>pFragProto);
  } else {
    memory.copy(fragKey + FRAG_KEY6_SADDR, pSaddr, 16);
    memory.copy(fragKey + FRAG_KEY6_DADDR, pDaddr, 16);
    store<u32>(fragKey + FRAG_KEY6_ID, pFragId);
    store<u8>(fragKey + FRAG_KEY6_PROTO, <u8>pFragProto);
  }
}

function bump(stats: usize, field: i32): void {
  store<u64>(stats + field, load<u64>(stats + field) + 1);
}

/** Records or supplies the ports of a fragmented datagram. Returns 0 or a drop reason. */
export function fragProcess(now: u32): i32 {
  if (pFrag == FRAG_NONE || pIcmpError) return 0;
  const id = pFamily == 4 ? TABLE_FRAG4 : TABLE_FRAG6;
  const t = table(id);
  writeKey();
  let idx = tableLookup(t, fragKey);
  if (pFrag == FRAG_LATER) {
    if (idx == 0) return DROP_FRAG_NOSUPPORT;
    const e = slotAddr(t, idx);
    if (load<u32>(e + FRAG_ENTRY_LIFETIME) < now) return DROP_FRAG_NOSUPPORT;
    parse.setFlow(<i32>load<u8>(e + FRAG_ENTRY_PROTO), load<u16>(e + FRAG_ENTRY_SPORT), load<u16>(e + FRAG_ENTRY_DPORT));
    return 0;
  }
  // FRAG_FIRST: (re)record the datagram.
  if (idx == 0) {
    idx = tableInsert(t, fragKey);
    if (idx == 0) {
      const oldest = tableVictim(t);
      if (oldest == 0) return 0; // zero-capacity table: later fragments will be dropped
      if (load<u32>(slotAddr(t, oldest) + FRAG_ENTRY_LIFETIME) >= now) bump(statsOf(id), CT_STATS_EVICTED);
      tableRemove(t, oldest);
      idx = tableInsert(t, fragKey);
    }
    bump(statsOf(id), CT_STATS_CREATED);
  }
  const e = slotAddr(t, idx);
  store<u16>(e + FRAG_ENTRY_SPORT, pSport);
  store<u16>(e + FRAG_ENTRY_DPORT, pDport);
  store<u32>(e + FRAG_ENTRY_LIFETIME, now + cfgFragTimeout);
  store<u8>(e + FRAG_ENTRY_PROTO, <u8>pProto);
  return 0;
}
