/**
 * The service manager: services with their backends in, table records out.
 * It allocates backend ids and rev-NAT indexes, computes each change as one
 * list of table operations, validated completely (input and table capacity)
 * before the first write, and applies the same list to every writer it was
 * given (the Wasm tables and/or the kernel maps), so both hold identical
 * records.
 *
 * Write order keeps the datapath consistent while a change is applied:
 * backends, reverse NAT and the Maglev row first, then slots 1..N, then the
 * master (slot 0, the count), then slots above N and the backends that left.
 */
import { InvalidInputError, wrap } from "../errors.js";
import { LbAlgorithm } from "../generated/layout.js";
import { formatIp, parseIp, type IpFamily } from "../packet/address.js";
import { maglevTable } from "./maglev.js";
import type { ResolvedLbOptions } from "./options.js";
import { backendValue, idKey, revNatValue, serviceKey, serviceValue } from "./records.js";
import { denseSlots, legacySlots } from "./slots.js";
import type { LbTableName, LbTableWriter } from "./tables.js";
import { IPPROTO } from "../packet/decode.js";

export type ServiceAlgorithm = "random" | "legacy" | "maglev";
export type ServiceProto = "tcp" | "udp";

export interface BackendSpec {
  addr: string;
  port: number;
  /** Slots the backend takes (random, legacy: 1..255; maglev: 1); 0 drains it: no new flows, established ones stay. Default 1. */
  weight?: number;
}

export interface ServiceSpec {
  vip: string;
  port: number;
  proto: ServiceProto;
  /** Default "random" (services v2). */
  algorithm?: ServiceAlgorithm;
  backends: BackendSpec[];
  /** Maglev table size; must be the datapath's (options.lb.maglevM) when given. */
  maglevM?: number;
}

export interface ServiceFrontend {
  vip: string;
  port: number;
  proto: ServiceProto;
}

export interface BackendInfo {
  id: number;
  addr: string;
  port: number;
  weight: number;
}

export interface ServiceInfo extends ServiceFrontend {
  algorithm: ServiceAlgorithm;
  revNatIndex: number;
  /** Row of the Maglev table (maglev only). */
  maglevRow?: number;
  backends: BackendInfo[];
  /** Backend id of each slot 1..N. */
  slots: number[];
}

export interface UpsertResult {
  service: ServiceInfo;
  /** Advice that did not stop the change (e.g. a Maglev table too small for fair shares). */
  warnings: string[];
}

const PROTO_NUMBER: Record<ServiceProto, number> = { tcp: IPPROTO.TCP, udp: IPPROTO.UDP };
const ALGORITHM_CODE: Record<ServiceAlgorithm, number> = {
  random: LbAlgorithm.LB_ALG_RANDOM, legacy: LbAlgorithm.LB_ALG_LEGACY, maglev: LbAlgorithm.LB_ALG_MAGLEV,
};
const MAX_SLOTS = 0xffff;
const MAX_WEIGHT = 255;
const MAX_BACKEND_ID = 0xffffffff;

interface BackendState {
  id: number;
  addr: Uint8Array;
  addrText: string;
  port: number;
  weight: number;
}

interface ServiceState {
  family: IpFamily;
  vip: Uint8Array;
  vipText: string;
  port: number;
  proto: ServiceProto;
  algorithm: ServiceAlgorithm;
  revNatIndex: number;
  maglevRow?: number;
  /** By "addr:port". */
  backends: Map<string, BackendState>;
  slots: number[];
}

type Op =
  | { kind: "update"; table: LbTableName; key: Uint8Array; value: Uint8Array }
  | { kind: "delete"; table: LbTableName; key: Uint8Array }
  | { kind: "maglev"; row: number; ids: Uint32Array };

function frontendKey(family: IpFamily, vip: string, port: number, proto: ServiceProto): string {
  return `${proto}:${family === 6 ? `[${vip}]` : vip}:${port}`;
}

/** How the Maglev builder names a backend: the same on every node. */
export function maglevBackendKey(addr: string, port: number, proto: ServiceProto): string {
  return `${addr}:${port}/${proto}`;
}

function port(path: string, v: unknown): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > 65535) throw new InvalidInputError(`${path}: expected a port 1..65535, got ${JSON.stringify(v)}`);
  return v;
}

function address(path: string, v: unknown): { family: IpFamily; bytes: Uint8Array; text: string } {
  if (typeof v !== "string") throw new InvalidInputError(`${path}: expected an IP address string, got ${JSON.stringify(v)}`);
  try {
    const p = parseIp(v);
    return { family: p.family, bytes: p.bytes, text: formatIp(p.bytes) };
  } catch (err) {
    throw new InvalidInputError(`${path}: ${(err as Error).message}`);
  }
}

export class ServiceManager {
  private readonly services = new Map<string, ServiceState>();
  private nextBackendId = 1;

  constructor(private readonly writers: readonly LbTableWriter[], private readonly options: ResolvedLbOptions) {}

  /** Creates or changes a service. Throws InvalidInputError (nothing changed) on bad input or full tables. */
  upsertService(spec: ServiceSpec): UpsertResult {
    const { state, old, warnings, nextBackendId } = this.plan(spec);
    const ops: Op[] = [];
    const fam = state.family;
    const backendsTable: LbTableName = fam === 4 ? "backends4" : "backends6";
    const protoNum = PROTO_NUMBER[state.proto];
    for (const b of state.backends.values()) {
      const before = old && [...old.backends.values()].find((o) => o.id === b.id);
      if (!before) ops.push({ kind: "update", table: backendsTable, key: idKey(b.id, 4), value: backendValue(fam, b.addr, b.port, protoNum) });
    }
    if (!old || old.revNatIndex !== state.revNatIndex) {
      ops.push({ kind: "update", table: fam === 4 ? "revNat4" : "revNat6", key: idKey(state.revNatIndex, 2), value: revNatValue(fam, state.vip, state.port) });
    }
    const active = [...state.backends.values()].filter((b) => b.weight > 0);
    if (state.algorithm === "maglev") {
      // No active backend: the datapath drops on count 0 before reading the row, so it is zeroed.
      const ids = active.length === 0
        ? new Uint32Array(this.options.maglevM)
        : maglevTable(active.map((b) => ({ id: b.id, key: maglevBackendKey(b.addrText, b.port, state.proto) })), this.options.maglevM);
      ops.push({ kind: "maglev", row: state.maglevRow!, ids });
    }
    const servicesTable: LbTableName = fam === 4 ? "services4" : "services6";
    const slotKey = (slot: number) => serviceKey(fam, state.vip, state.port, protoNum, slot);
    state.slots.forEach((id, i) => {
      if (old?.slots[i] !== id) ops.push({ kind: "update", table: servicesTable, key: slotKey(i + 1), value: serviceValue({ backendId: id, count: 0, revNatIndex: 0, algorithm: 0, maglevIndex: 0 }) });
    });
    ops.push({
      kind: "update", table: servicesTable, key: slotKey(0),
      value: serviceValue({
        backendId: 0, count: state.slots.length, revNatIndex: state.revNatIndex, algorithm: ALGORITHM_CODE[state.algorithm],
        maglevIndex: state.maglevRow ?? 0,
      }),
    });
    for (let slot = state.slots.length + 1; slot <= (old?.slots.length ?? 0); slot++) ops.push({ kind: "delete", table: servicesTable, key: slotKey(slot) });
    const keptIds = new Set([...state.backends.values()].map((b) => b.id));
    for (const b of old?.backends.values() ?? []) {
      if (!keptIds.has(b.id)) ops.push({ kind: "delete", table: backendsTable, key: idKey(b.id, 4) });
    }
    this.apply(ops, `upsert service ${frontendKey(fam, state.vipText, state.port, state.proto)}`);
    this.services.set(frontendKey(fam, state.vipText, state.port, state.proto), state);
    this.nextBackendId = nextBackendId;
    return { service: info(state), warnings };
  }

  /** Removes a service; false when there was none. */
  deleteService(frontend: ServiceFrontend): boolean {
    const vip = address("vip", frontend.vip);
    const key = frontendKey(vip.family, vip.text, port("port", frontend.port), proto("proto", frontend.proto));
    const state = this.services.get(key);
    if (!state) return false;
    const fam = state.family;
    const servicesTable: LbTableName = fam === 4 ? "services4" : "services6";
    const protoNum = PROTO_NUMBER[state.proto];
    const ops: Op[] = [];
    // The master first: new flows stop matching before the slots go.
    for (let slot = 0; slot <= state.slots.length; slot++) ops.push({ kind: "delete", table: servicesTable, key: serviceKey(fam, state.vip, state.port, protoNum, slot) });
    for (const b of state.backends.values()) ops.push({ kind: "delete", table: fam === 4 ? "backends4" : "backends6", key: idKey(b.id, 4) });
    ops.push({ kind: "delete", table: fam === 4 ? "revNat4" : "revNat6", key: idKey(state.revNatIndex, 2) });
    this.apply(ops, `delete service ${key}`);
    this.services.delete(key);
    return true;
  }

  /**
   * A copy that writes no datapath: the same services, backend ids and
   * capacity. A change of several services is tried on it first, so one that
   * fails half-way is refused before the real tables see any of it. (Service
   * states are replaced, never mutated, so sharing them is safe.)
   */
  dryRun(): ServiceManager {
    const copy = new ServiceManager([], this.options);
    for (const [k, v] of this.services) copy.services.set(k, v);
    copy.nextBackendId = this.nextBackendId;
    return copy;
  }

  listServices(): ServiceInfo[] {
    return [...this.services.values()].map(info).sort((a, b) => a.vip.localeCompare(b.vip) || a.port - b.port || a.proto.localeCompare(b.proto));
  }

  private apply(ops: Op[], what: string): void {
    for (const w of this.writers) {
      try {
        for (const op of ops) {
          if (op.kind === "update") w.update(op.table, op.key, op.value);
          else if (op.kind === "delete") w.delete(op.table, op.key);
          else w.writeMaglevRow(op.row, op.ids);
        }
      } catch (err) {
        // Capacity was checked before: a failure here is the datapath's, not the input's.
        throw wrap(`${what} (${w.engine} datapath)`, err);
      }
    }
  }

  /** Validates `spec` completely and computes the service's next state; changes nothing. */
  private plan(spec: ServiceSpec): { state: ServiceState; old?: ServiceState; warnings: string[]; nextBackendId: number } {
    if (typeof spec !== "object" || spec === null) throw new InvalidInputError(`service: expected an object, got ${JSON.stringify(spec)}`);
    const allowed = ["vip", "port", "proto", "algorithm", "backends", "maglevM"];
    for (const k of Object.keys(spec)) if (!allowed.includes(k)) throw new InvalidInputError(`service.${k}: unknown key (allowed: ${allowed.join(", ")})`);
    const vip = address("service.vip", spec.vip);
    const svcPort = port("service.port", spec.port);
    const svcProto = proto("service.proto", spec.proto);
    const where = `service ${frontendKey(vip.family, vip.text, svcPort, svcProto)}`;
    const algorithm = spec.algorithm ?? "random";
    if (!(algorithm in ALGORITHM_CODE)) throw new InvalidInputError(`${where}: algorithm: expected random, legacy or maglev, got ${JSON.stringify(spec.algorithm)}`);
    if (spec.maglevM !== undefined && spec.maglevM !== this.options.maglevM) {
      throw new InvalidInputError(`${where}: maglevM ${JSON.stringify(spec.maglevM)} differs from the datapath's Maglev table size ${this.options.maglevM} (set lb.maglevM in the datapath options)`);
    }
    if (!Array.isArray(spec.backends)) throw new InvalidInputError(`${where}: backends: expected an array, got ${JSON.stringify(spec.backends)}`);
    const key = frontendKey(vip.family, vip.text, svcPort, svcProto);
    const old = this.services.get(key);

    const backends = new Map<string, BackendState>();
    const takenIds = new Set<number>();
    for (const s of this.services.values()) if (s !== old) for (const b of s.backends.values()) takenIds.add(b.id);
    let nextId = this.nextBackendId;
    spec.backends.forEach((b, i) => {
      const at = `${where}: backends[${i}]`;
      if (typeof b !== "object" || b === null) throw new InvalidInputError(`${at}: expected an object, got ${JSON.stringify(b)}`);
      for (const k of Object.keys(b)) if (!["addr", "port", "weight"].includes(k)) throw new InvalidInputError(`${at}.${k}: unknown key (allowed: addr, port, weight)`);
      const addr = address(`${at}.addr`, b.addr);
      if (addr.family !== vip.family) throw new InvalidInputError(`${at}.addr: ${addr.text} is IPv${addr.family}, the VIP IPv${vip.family}`);
      const bPort = port(`${at}.port`, b.port);
      const weight = b.weight ?? 1;
      const maxWeight = algorithm === "maglev" ? 1 : MAX_WEIGHT;
      if (typeof weight !== "number" || !Number.isInteger(weight) || weight < 0 || weight > maxWeight) {
        throw new InvalidInputError(`${at}.weight: expected an integer 0..${maxWeight}${algorithm === "maglev" ? " (maglev gives every backend an equal share; 0 drains)" : ""}, got ${JSON.stringify(weight)}`);
      }
      const bKey = `${addr.text}:${bPort}`;
      if (backends.has(bKey)) throw new InvalidInputError(`${at}: ${bKey} is listed twice`);
      let id = old?.backends.get(bKey)?.id;
      if (id === undefined) {
        while (takenIds.has(nextId) || [...backends.values()].some((x) => x.id === nextId)) nextId = nextId >= MAX_BACKEND_ID ? 1 : nextId + 1;
        id = nextId;
        nextId = nextId >= MAX_BACKEND_ID ? 1 : nextId + 1;
      }
      backends.set(bKey, { id, addr: addr.bytes, addrText: addr.text, port: bPort, weight });
    });

    const weighted = [...backends.values()].map((b) => ({ id: b.id, weight: b.weight }));
    const slots = algorithm === "legacy" ? legacySlots(old?.algorithm === "legacy" ? old.slots : [], weighted) : denseSlots(weighted);
    if (slots.length > MAX_SLOTS) throw new InvalidInputError(`${where}: ${slots.length} slots (backends x weights); at most ${MAX_SLOTS}`);

    // Capacity, per family, as the tables will be after the change.
    const others = [...this.services.values()].filter((s) => s !== old && s.family === vip.family);
    const serviceEntries = others.reduce((n, s) => n + 1 + s.slots.length, 0) + 1 + slots.length;
    if (serviceEntries > this.options.services) throw new InvalidInputError(`${where}: the services table would need ${serviceEntries} entries (masters and slots); it has ${this.options.services} (lb.services)`);
    const backendEntries = others.reduce((n, s) => n + s.backends.size, 0) + backends.size;
    if (backendEntries > this.options.backends) throw new InvalidInputError(`${where}: the backends table would need ${backendEntries} entries; it has ${this.options.backends} (lb.backends)`);

    let revNatIndex = old?.revNatIndex;
    if (revNatIndex === undefined) {
      const used = new Set([...this.services.values()].filter((s) => s.family === vip.family).map((s) => s.revNatIndex));
      for (let i = 1; i <= this.options.revNat; i++) if (!used.has(i)) { revNatIndex = i; break; }
      if (revNatIndex === undefined) throw new InvalidInputError(`${where}: no free reverse-NAT index (lb.revNat is ${this.options.revNat})`);
    }
    let maglevRow: number | undefined;
    if (algorithm === "maglev") {
      maglevRow = old?.maglevRow;
      if (maglevRow === undefined) {
        const used = new Set([...this.services.values()].map((s) => s.maglevRow).filter((r) => r !== undefined));
        for (let r = 0; r < this.options.maglevRows; r++) if (!used.has(r)) { maglevRow = r; break; }
        if (maglevRow === undefined) throw new InvalidInputError(`${where}: every Maglev row is in use (lb.maglevRows is ${this.options.maglevRows})`);
      }
    }

    const warnings: string[] = [];
    const active = [...backends.values()].filter((b) => b.weight > 0).length;
    if (algorithm === "maglev" && active > 0 && this.options.maglevM <= 100 * active) {
      warnings.push(`${where}: Maglev table size ${this.options.maglevM} <= 100 x ${active} backends; shares may differ by more than 1% (use a larger lb.maglevM)`);
    }
    const state: ServiceState = {
      family: vip.family, vip: vip.bytes, vipText: vip.text, port: svcPort, proto: svcProto, algorithm, revNatIndex, maglevRow, backends, slots,
    };
    return { state, old, warnings, nextBackendId: nextId };
  }
}

function proto(path: string, v: unknown): ServiceProto {
  if (v !== "tcp" && v !== "udp") throw new InvalidInputError(`${path}: expected "tcp" or "udp", got ${JSON.stringify(v)}`);
  return v;
}

function info(s: ServiceState): ServiceInfo {
  return {
    vip: s.vipText, port: s.port, proto: s.proto, algorithm: s.algorithm, revNatIndex: s.revNatIndex,
    ...(s.maglevRow !== undefined ? { maglevRow: s.maglevRow } : {}),
    backends: [...s.backends.values()].map((b) => ({ id: b.id, addr: b.addrText, port: b.port, weight: b.weight })),
    slots: [...s.slots],
  };
}
