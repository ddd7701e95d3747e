/**
 * Service records -> the load balancer's ServiceSpecs, and the difference
 * between two sets of them: only services whose frontend or backends changed
 * are re-programmed (re-programming an unchanged service would cost a
 * datapath write per backend slot for nothing).
 *
 * A record has frontends (one per cluster IP and service port) and backends
 * carrying the service port's name; a frontend's backends are those with its
 * port name and protocol, and of its address family: a dual-stack Service
 * has an IPv4 and an IPv6 cluster IP, and an IPv4 frontend cannot forward to
 * an IPv6 backend (nor the reverse).
 */
import type { ServiceFrontend, ServiceSpec } from "../lb/manager.js";
import type { ServiceRecord } from "../kvstore/records/service.js";

const isIpv6 = (ip: string) => ip.includes(":");

export function frontendKey(f: ServiceFrontend): string {
  return `${f.vip}|${f.port}|${f.proto}`;
}

/** One ServiceSpec per frontend of the record (backends sorted, so equal records give equal specs). */
export function serviceSpecsOf(record: ServiceRecord): ServiceSpec[] {
  return record.frontends.map((f) => {
    const backends = record.backends
      .filter((b) => (b.name ?? "") === (f.name ?? "") && b.protocol === f.protocol && isIpv6(b.ip) === isIpv6(f.ip))
      .map((b) => ({ addr: b.ip, port: b.port }))
      .sort((a, b) => (a.addr < b.addr ? -1 : a.addr > b.addr ? 1 : a.port - b.port));
    return { vip: f.ip, port: f.port, proto: f.protocol === "UDP" ? "udp" : "tcp", backends } satisfies ServiceSpec;
  });
}

export interface ServiceDiff {
  upsert: ServiceSpec[];
  delete: ServiceFrontend[];
}

/**
 * The services the datapath holds, per service record key. `update(key,
 * record)` says what to program for that record's change; a frontend two
 * records claim belongs to the one written last, and deleting the loser does
 * not delete it.
 */
export class ServiceTable {
  /** record key -> frontend key -> spec JSON. */
  private readonly byRecord = new Map<string, Map<string, string>>();
  /** frontend key -> [record key, spec]. */
  private readonly programmed = new Map<string, { owner: string; spec: ServiceSpec; json: string }>();

  update(key: string, record: ServiceRecord | undefined): ServiceDiff {
    const diff: ServiceDiff = { upsert: [], delete: [] };
    const before = this.byRecord.get(key) ?? new Map<string, string>();
    const after = new Map<string, string>();
    const specs = record ? serviceSpecsOf(record) : [];
    for (const spec of specs) {
      const fk = frontendKey(spec);
      const json = JSON.stringify(spec);
      after.set(fk, json);
      const cur = this.programmed.get(fk);
      if (cur?.json === json) {
        cur.owner = key;
        continue;
      }
      this.programmed.set(fk, { owner: key, spec, json });
      diff.upsert.push(spec);
    }
    for (const fk of before.keys()) {
      if (after.has(fk)) continue;
      const cur = this.programmed.get(fk);
      if (cur?.owner !== key) continue;
      this.programmed.delete(fk);
      diff.delete.push({ vip: cur.spec.vip, port: cur.spec.port, proto: cur.spec.proto });
    }
    if (after.size > 0) this.byRecord.set(key, after);
    else this.byRecord.delete(key);
    return diff;
  }

  /** What the datapath holds, sorted by frontend. */
  list(): ServiceSpec[] {
    return [...this.programmed.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, v]) => v.spec);
  }

  get size(): number {
    return this.programmed.size;
  }
}
