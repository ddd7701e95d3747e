/**
 * Lists that ask the running agent over its API socket (the state dir's
 * agent.sock, 0600): `membrane node list`, `membrane ipcache list`,
 * `membrane cluster status|policy|routes`, and the agent side of
 * `endpoint|identity|service list` (askAgentList: used when no --config names
 * a state file).
 */
import type { Command } from "commander";
import { callAgent } from "../api/client.js";
import { agentSocketPath } from "../api/socket-path.js";
import { DEFAULT_STATE_DIR } from "../agent/status-file.js";
import { MembraneError } from "../errors.js";
import { example, jsonOption, outputOf } from "./command.js";
import type { Output } from "../format/output.js";
import { renderTable, toJson, type Column } from "../format/table.js";

export const DEFAULT_AGENT_SOCKET = agentSocketPath(DEFAULT_STATE_DIR);

const SOCKET_HELP = `the agent's API socket (default ${DEFAULT_AGENT_SOCKET})`;

/** GET `path` from the agent; a non-200 reply becomes an error carrying the agent's code and message. */
export async function askAgent<T>(socket: string | undefined, path: string): Promise<T> {
  const where = socket ?? DEFAULT_AGENT_SOCKET;
  const reply = await callAgent<T & { error?: string; code?: string }>(where, "GET", path);
  if (reply.status !== 200) {
    const b = reply.body as { error?: string; code?: string } | undefined;
    throw new MembraneError(b?.code ?? "AGENT_ERROR", `agent at ${where}: GET ${path}: ${b?.error ?? `HTTP ${reply.status}`}`);
  }
  return reply.body;
}

type Row = Record<string, unknown>;
const s = (v: unknown) => (v === undefined || v === null ? "-" : Array.isArray(v) ? v.join(",") : String(v));

const COLUMNS: Record<string, Column<Row>[]> = {
  endpoints: [
    { header: "ID", value: (r) => Number(r.id) },
    { header: "POD", value: (r) => s(r.pod) },
    { header: "IDENTITY", value: (r) => Number(r.identity) },
    { header: "IPV4", value: (r) => s(r.ipv4) },
    { header: "IPV6", value: (r) => s(r.ipv6) },
    { header: "INGRESS", value: (r) => (r.enforceIngress ? "enforced" : "allow-all") },
    { header: "EGRESS", value: (r) => (r.enforceEgress ? "enforced" : "allow-all") },
    { header: "ENTRIES", value: (r) => Number(r.entries) },
    { header: "LABELS", value: (r) => s(r.labels) },
  ],
  identities: [
    { header: "ID", value: (r) => Number(r.id) },
    { header: "KIND", value: (r) => s(r.kind) },
    { header: "SCOPE", value: (r) => s(r.scope) },
    { header: "LOCAL-REFS", value: (r) => Number(r.localReferences) },
    { header: "LABELS", value: (r) => s(r.labels) },
  ],
  services: [
    { header: "FRONTEND", value: (r) => `${r.vip}:${r.port}/${r.proto}` },
    { header: "BACKENDS", value: (r) => (r.backends as { addr: string; port: number }[]).map((b) => `${b.addr}:${b.port}`).join(",") || "-" },
  ],
  nodes: [
    { header: "NAME", value: (r) => `${r.name}${r.self ? " (this node)" : ""}` },
    { header: "ADDRESSES", value: (r) => (r.addresses as { ip: string }[]).map((a) => a.ip).join(",") },
    { header: "IPV4-CIDR", value: (r) => s(r.ipv4AllocCidr) },
    { header: "IPV6-CIDR", value: (r) => s(r.ipv6AllocCidr) },
    { header: "KEY", value: (r) => Number(r.encryptionKey) },
  ],
  ipcache: [
    { header: "PREFIX", value: (r) => s(r.cidr) },
    { header: "IDENTITY", value: (r) => Number(r.identity) },
    { header: "SOURCE", value: (r) => s(r.source) },
  ],
  routes: [
    { header: "PREFIX", value: (r) => s(r.prefix) },
    { header: "VIA", value: (r) => s(r.via) },
    { header: "DEVICE", value: (r) => s(r.device) }, // set: into the encrypting TUN, not via the underlay
    { header: "NODE", value: (r) => s(r.node) },
  ],
};

export type AgentList = "endpoints" | "identities" | "services" | "nodes" | "ipcache" | "routes";

/** Prints one of the agent's lists: a table, or JSON lines with --json. */
export async function askAgentList(what: AgentList, o: { socket?: string; json?: boolean }, io: Output): Promise<void> {
  const rows = await askAgent<Row[]>(o.socket, `/v1/${what}`);
  if (o.json) {
    for (const r of rows) io.out(toJson(r));
    return;
  }
  io.out(renderTable(COLUMNS[what]!, rows));
}

function listCommand(program: Command, group: string, what: AgentList, description: string): void {
  const g = program.command(group).description(description);
  example(g, `membrane ${group} list`);
  const list = g.command("list").description(`${description} (asks the running agent)`).option("--socket <path>", SOCKET_HELP);
  jsonOption(list, "JSON lines, one entry each");
  example(list, `membrane ${group} list`, `membrane ${group} list --socket /run/membrane/agent.sock --json`);
  list.action((o: { socket?: string; json: boolean }, self: Command) => askAgentList(what, o, outputOf(self)));
}

/** `membrane node list`, `membrane ipcache list`, `membrane cluster status|policy|routes`. */
export function registerCluster(program: Command): void {
  listCommand(program, "node", "nodes", "the cluster's nodes as the agent sees them: addresses, pod CIDRs, encryption key");
  listCommand(program, "ipcache", "ipcache", "the agent's ipcache: prefix -> security identity, local endpoints and remote pods");

  const cluster = program.command("cluster").description("the running agent's view of the cluster");
  example(cluster, "membrane cluster status");
  const status = cluster.command("status").description("kvstore health, age of the last event, backoff, counts, regenerations").option("--socket <path>", SOCKET_HELP);
  jsonOption(status, "the status as one JSON object");
  example(status, "membrane cluster status", "membrane cluster status --json");
  status.action(async (o: { socket?: string; json: boolean }, self: Command) => {
    const io = outputOf(self);
    const st = await askAgent<ClusterStatusReply>(o.socket, "/v1/status");
    if (o.json) {
      io.out(toJson(st));
      return;
    }
    for (const line of statusLines(st)) io.out(line);
  });

  const policy = cluster.command("policy").description("policy entries per local endpoint").argument("[endpoint-id]").option("--socket <path>", SOCKET_HELP);
  jsonOption(policy, "JSON lines, one endpoint each");
  example(policy, "membrane cluster policy", "membrane cluster policy 3 --json");
  policy.action(async (id: string | undefined, o: { socket?: string; json: boolean }, self: Command) => {
    const io = outputOf(self);
    const rows = await askAgent<{ endpoint: number; pod: string; entries: { direction: string; identity: number; port: number; proto: number; deny: boolean }[] }[]>(
      o.socket,
      id === undefined ? "/v1/policy" : `/v1/policy?endpoint=${encodeURIComponent(id)}`,
    );
    if (o.json) {
      for (const r of rows) io.out(toJson(r));
      return;
    }
    const flat = rows.flatMap((r) => r.entries.map((e) => ({ ...e, endpoint: r.endpoint, pod: r.pod })));
    io.out(renderTable<(typeof flat)[number]>([
      { header: "ENDPOINT", value: (r) => r.endpoint },
      { header: "POD", value: (r) => r.pod },
      { header: "DIRECTION", value: (r) => r.direction },
      { header: "IDENTITY", value: (r) => (r.identity === 0 ? "any" : String(r.identity)), right: true },
      { header: "PORT", value: (r) => (r.port === 0 ? "any" : String(r.port)), right: true },
      { header: "PROTO", value: (r) => (r.proto === 0 ? "any" : String(r.proto)), right: true },
      { header: "VERDICT", value: (r) => (r.deny ? "deny" : "allow") },
    ], flat));
  });

  const routes = cluster.command("routes").description("routes toward other nodes' pods").option("--socket <path>", SOCKET_HELP);
  jsonOption(routes, "JSON lines, one route each");
  example(routes, "membrane cluster routes");
  routes.action((o: { socket?: string; json: boolean }, self: Command) => askAgentList("routes", o, outputOf(self)));
}

interface ClusterStatusReply {
  node: string;
  cluster: string;
  kvstore: { backend: string; location: string; state: string; failures: number; lastError?: string; lastEventAgeMs: number | null; revision: number };
  backoff: { reconnectAttempts: { attempt: number; waitMs: number }[]; watchFailures: Record<string, number> };
  bootstrapSeconds: number | null;
  counts: Record<string, number>;
  regenerations: number;
  regenerationFailures: number;
  events: number;
}

export function statusLines(st: ClusterStatusReply): string[] {
  const k = st.kvstore;
  const age = k.lastEventAgeMs === null ? "never" : `${(k.lastEventAgeMs / 1000).toFixed(1)} s ago`;
  const watching = Object.values(st.backoff.watchFailures).filter((n) => n > 0).length;
  return [
    `node:          ${st.node} (cluster ${st.cluster})`,
    `kvstore:       ${k.backend} ${k.location}: ${k.state}${k.lastError ? ` (${k.lastError})` : ""}, revision ${k.revision}, last event ${age}`,
    `backoff:       ${k.failures} failed checks${st.backoff.reconnectAttempts.length ? `; waits ${st.backoff.reconnectAttempts.map((a) => `${(a.waitMs / 1000).toFixed(2)}s`).join(", ")}` : ""}; ${watching} watches retrying`,
    `bootstrap:     ${st.bootstrapSeconds === null ? "in progress" : `${st.bootstrapSeconds.toFixed(2)} s`}`,
    `counts:        ${Object.entries(st.counts).map(([n, v]) => `${n} ${v}`).join(", ")}`,
    `regenerations: ${st.regenerations} (${st.regenerationFailures} failed), ${st.events} events`,
  ];
}
