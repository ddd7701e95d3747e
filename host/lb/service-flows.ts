/**
 * Which backend serves which flows of a service, from conntrack: every
 * tracked client -> backend entry carries the backend id and the service's
 * rev-NAT index. The forwarder reports it, so the live view shows which
 * backend answered (replies counted per backend).
 */
import { TupleFlags } from "../generated/layout.js";
import type { CtRecord } from "../conntrack/records.js";
import type { ServiceInfo } from "./manager.js";
import { hostPort } from "../format/address.js";

export interface ServiceFlowSummary {
  /** "10.96.0.10:80/tcp", "[fd00:96::10]:80/tcp". */
  frontend: string;
  backendId: number;
  /** "10.200.2.2:8080". */
  backend: string;
  /** Tracked flows to this backend (conntrack entries). */
  flows: number;
  /** Packets client -> backend, and backend -> client (the answers). */
  txPackets: number;
  rxPackets: number;
}

/** One row per backend of every service (zero rows included, so a share of nothing shows). */
export function serviceFlows(services: readonly ServiceInfo[], records: Iterable<CtRecord>): ServiceFlowSummary[] {
  const rows = new Map<string, ServiceFlowSummary>();
  const key = (family: number, revNat: number, backendId: number) => `${family}/${revNat}/${backendId}`;
  for (const s of services) {
    const family = s.vip.includes(":") ? 6 : 4;
    for (const b of s.backends) {
      rows.set(key(family, s.revNatIndex, b.id), {
        frontend: `${hostPort(s.vip, s.port)}/${s.proto}`, backendId: b.id, backend: hostPort(b.addr, b.port),
        flows: 0, txPackets: 0, rxPackets: 0,
      });
    }
  }
  for (const r of records) {
    // The SERVICE entry (client -> VIP) only remembers the choice; the packets are counted on client -> backend.
    if (r.tuple.flags & TupleFlags.TUPLE_F_SERVICE || r.entry.revNatIndex === 0) continue;
    const row = rows.get(key(r.tuple.family, r.entry.revNatIndex, r.entry.backendId));
    if (!row) continue;
    row.flows++;
    row.txPackets += Number(r.entry.txPackets);
    row.rxPackets += Number(r.entry.rxPackets);
  }
  return [...rows.values()];
}
