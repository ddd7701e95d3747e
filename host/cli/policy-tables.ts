/**
 * `membrane bpf endpoint list` and `membrane bpf policy get <endpoint>`: the
 * kernel datapath's endpoint and policy maps, read from their pins, as aligned
 * tables or JSON lines. The rows come from any PolicyTableStore, so the same
 * listing works for a Wasm datapath (library use).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Command } from "commander";
import { BpfMap } from "../bpf/map.js";
import { pinDir as defaultPinDir } from "../bpf/bpffs.js";
import { InvalidInputError } from "../errors.js";
import { decodeEndpointRow, decodePolicyRow, type EndpointRow, type PolicyRow } from "../policy/records.js";
import type { PolicyTableName, PolicyTableStore } from "../policy/tables.js";
import { ReservedIdentity } from "../policy/types.js";
import { example, jsonOption, outputOf, refuseOtherVerbs } from "./command.js";
import { renderTable, toJson } from "./table.js";
import type { EndpointRecord } from "../policy/types.js";

/** The pinned policy maps under `dir` as a read-only store. */
export class PinnedPolicyTables implements PolicyTableStore {
  readonly engine = "bpf";
  constructor(private readonly dir: string) {}

  private open<T>(table: PolicyTableName, use: (m: BpfMap) => T): T {
    const path = join(this.dir, table);
    if (!existsSync(path)) throw new InvalidInputError(`read ${path}: no pinned ${table} map there (is the kernel datapath loaded with pinning to ${this.dir}?)`);
    const map = BpfMap.openPinned(path);
    try {
      return use(map);
    } finally {
      map.close();
    }
  }

  capacity(table: PolicyTableName): number { return this.open(table, (m) => m.maxEntries); }
  dump(table: PolicyTableName): Array<[Uint8Array, Uint8Array]> { return this.open(table, (m) => m.dump()); }
  upsert(table: PolicyTableName): void { throw new InvalidInputError(`${table}: the pinned view is read-only`); }
  delete(table: PolicyTableName): boolean { throw new InvalidInputError(`${table}: the pinned view is read-only`); }
}

/** A local endpoint as the kernel maps hold it (the engine's record shape). */
export type EndpointListing = EndpointRecord;

/** Endpoints by id, both families' addresses merged. */
export function listEndpoints(store: PolicyTableStore): EndpointListing[] {
  const byId = new Map<number, EndpointListing>();
  const add = (row: EndpointRow, family: "ipv4" | "ipv6") => {
    const { address, ...rest } = row;
    const e = byId.get(row.id) ?? { ...rest };
    e[family] = address;
    byId.set(row.id, e);
  };
  for (const [k, v] of store.dump("endpoints4")) add(decodeEndpointRow("endpoints4", k, v), "ipv4");
  for (const [k, v] of store.dump("endpoints6")) add(decodeEndpointRow("endpoints6", k, v), "ipv6");
  return [...byId.values()].sort((a, b) => a.id - b.id);
}

/** One endpoint's policy entries, ingress first, then by identity, port and protocol. */
export function endpointPolicy(store: PolicyTableStore, endpointId: number): PolicyRow[] {
  return store.dump("policy").map(([k, v]) => decodePolicyRow(k, v)).filter((r) => r.endpointId === endpointId)
    .sort((a, b) => a.direction.localeCompare(b.direction) * -1 || a.identity - b.identity || a.port - b.port || a.proto - b.proto);
}

const RESERVED_NAME = new Map<number, string>(Object.entries(ReservedIdentity).map(([name, id]) => [id, name]));
const PROTO_NAME: Record<number, string> = { 0: "any", 1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6" };

function identityText(id: number): string {
  if (id === 0) return "any";
  const reserved = RESERVED_NAME.get(id);
  return reserved ? `${id} (reserved:${reserved})` : String(id);
}

export function formatEndpoints(rows: EndpointListing[]): string {
  return renderTable<EndpointListing>([
    { header: "ENDPOINT", value: (r) => r.id },
    { header: "IDENTITY", value: (r) => r.identity },
    { header: "IPV4", value: (r) => r.ipv4 ?? "-" },
    { header: "IPV6", value: (r) => r.ipv6 ?? "-" },
    { header: "IFINDEX", value: (r) => r.ifindex },
    { header: "MAC", value: (r) => r.mac },
    { header: "POLICY", value: (r) => [r.enforceIngress && "ingress", r.enforceEgress && "egress"].filter(Boolean).join(",") || "disabled" },
  ], rows);
}

export function formatPolicy(rows: PolicyRow[]): string {
  return renderTable<PolicyRow>([
    { header: "DIRECTION", value: (r) => r.direction },
    { header: "IDENTITY", value: (r) => identityText(r.identity), right: true },
    { header: "PORT", value: (r) => (r.port === 0 ? "any" : String(r.port)), right: true },
    { header: "PROTO", value: (r) => PROTO_NAME[r.proto] ?? String(r.proto) },
    { header: "VERDICT", value: (r) => (r.deny ? "deny" : "allow") },
    { header: "FLOWS", value: (r) => r.hits },
  ], rows);
}

const PIN_DIR_HELP = "where the maps are pinned (default /sys/fs/bpf/membrane, or $MEMBRANE_BPFFS)";

/** `membrane bpf endpoint list [--pin-dir D] [--json]` */
export function registerBpfEndpoint(bpf: Command): void {
  const endpoint = bpf.command("endpoint").description("local endpoints in the kernel's maps (pinned)");
  refuseOtherVerbs(endpoint, (got) => `bpf endpoint: expected "bpf endpoint list", got "bpf endpoint ${got[0] ?? ""}"`.trimEnd());
  example(endpoint, "membrane bpf endpoint list");
  const list = endpoint.command("list").description("endpoints by id: identity, addresses, ifindex, MAC, policy enforcement")
    .option("--pin-dir <dir>", PIN_DIR_HELP);
  jsonOption(list, "JSON lines, one endpoint each");
  example(list, "membrane bpf endpoint list", "membrane bpf endpoint list --pin-dir /sys/fs/bpf/membrane --json");
  list.action((o: { pinDir?: string; json: boolean }, self: Command) => {
    const io = outputOf(self);
    const rows = listEndpoints(new PinnedPolicyTables(o.pinDir ?? defaultPinDir()));
    if (o.json) rows.forEach((r) => io.out(toJson(r)));
    else io.out(rows.length ? formatEndpoints(rows) : "(no endpoints)");
  });
}

/** `membrane bpf policy get <endpoint> [--pin-dir D] [--json]` */
export function registerBpfPolicy(bpf: Command): void {
  const policy = bpf.command("policy").description("an endpoint's policy entries in the kernel's map (pinned)");
  refuseOtherVerbs(policy, (got) => `bpf policy: expected "bpf policy get <endpoint>", got "bpf policy ${got[0] ?? ""}"`.trimEnd());
  example(policy, "membrane bpf policy get 101");
  const get = policy.command("get").description("the endpoint's entries, ingress first: identity, port, protocol, verdict, flows that hit it")
    .argument("[endpoint...]", "the endpoint id, 1..65535")
    .usage("<endpoint> [options]")
    .option("--pin-dir <dir>", PIN_DIR_HELP);
  jsonOption(get, "JSON lines, one entry each");
  example(get, "membrane bpf policy get 101", "membrane bpf policy get 101 --json");
  get.action((ids: string[], o: { pinDir?: string; json: boolean }, self: Command) => {
    const io = outputOf(self);
    if (ids.length !== 1) throw new InvalidInputError(`bpf policy get: expected one endpoint id, got ${ids.length} arguments`);
    const id = Number(ids[0]);
    if (!/^[0-9]+$/.test(ids[0]!) || id < 1 || id > 0xffff) throw new InvalidInputError(`bpf policy get: endpoint id must be 1..65535, got "${ids[0]}"`);
    const rows = endpointPolicy(new PinnedPolicyTables(o.pinDir ?? defaultPinDir()), id);
    if (o.json) rows.forEach((r) => io.out(toJson(r)));
    else io.out(rows.length ? formatPolicy(rows) : `(no policy entries for endpoint ${id}: with enforcement on, everything is denied)`);
  });
}
