/**
 * `membrane service list` (the services of a state file, as the service
 * manager programs them) and `membrane bpf lb list` (the kernel's pinned LB
 * maps, record by record). The table listing also serves replay, which prints
 * the Wasm (or kernel) tables it ran with.
 */
import { askAgentList } from "./cluster.js";
import { Command } from "commander";
import { pinDir as defaultPinDir } from "../bpf/bpffs.js";
import { InvalidInputError } from "../errors.js";
import { frontendText, readLbListing, type LbListing } from "../lb/listing.js";
import { ServiceManager, type ServiceInfo } from "../lb/manager.js";
import { applyServices } from "../state/services.js";
import { PinnedLbTables } from "../kernel/pinned-lb.js";
import type { Output } from "../format/output.js";
import { loadState } from "../state/file.js";
import { renderTable, toJson } from "../format/table.js";
import { hostPort } from "../format/address.js";
import { example, jsonOption, outputOf, refuseOtherVerbs } from "./command.js";

/** "1,2,3" for short slot lists; long ones (Maglev with hundreds of backends) are cut. */
function slotText(slots: number[]): string {
  const shown = slots.slice(0, 16).join(",");
  return slots.length > 16 ? `${shown},... (${slots.length})` : shown || "-";
}

/** The LB tables as aligned text: services with their slots, backends, reverse NAT, Maglev rows. */
export function formatLbListing(l: LbListing, title: string): string {
  const out: string[] = [];
  out.push(`${title} services (${l.services.length}):`);
  out.push(l.services.length ? renderTable<LbListing["services"][number]>([
    { header: "FRONTEND", value: (s) => frontendText(s) },
    { header: "ALGORITHM", value: (s) => s.algorithm },
    { header: "REV-NAT", value: (s) => s.revNatIndex, right: true },
    { header: "MAGLEV ROW", value: (s) => (s.maglevRow === undefined ? "-" : String(s.maglevRow)), right: true },
    { header: "SLOTS", value: (s) => s.slots.length, right: true },
    { header: "BACKEND ID PER SLOT", value: (s) => slotText(s.slots) + (s.extraSlots ? ` (+${s.extraSlots} stale slots)` : "") },
  ], l.services) : "(none)");
  out.push("", `${title} backends (${l.backends.length}):`);
  out.push(l.backends.length ? renderTable<LbListing["backends"][number]>([
    { header: "ID", value: (b) => b.id },
    { header: "ADDRESS", value: (b) => b.addr },
    { header: "PORT", value: (b) => b.port },
    { header: "PROTO", value: (b) => b.proto },
  ], l.backends) : "(none)");
  out.push("", `${title} reverse NAT (${l.revNat.length}):`);
  out.push(l.revNat.length ? renderTable<LbListing["revNat"][number]>([
    { header: "INDEX", value: (n) => n.index },
    { header: "ADDRESS", value: (n) => n.addr },
    { header: "PORT", value: (n) => n.port },
  ], l.revNat) : "(none)");
  if (l.maglev.length) {
    out.push("", `${title} Maglev rows (${l.maglev.length}):`);
    out.push(renderTable<LbListing["maglev"][number]>([
      { header: "ROW", value: (r) => r.row },
      { header: "SERVICE", value: (r) => r.service },
      { header: "ENTRIES", value: (r) => r.entries },
      { header: "BACKENDS", value: (r) => r.backends.length },
      { header: "MIN..MAX PER BACKEND", value: (r) => (r.backends.length ? `${r.backends.reduce((m, b) => Math.min(m, b.entries), Infinity)}..${r.backends.reduce((m, b) => Math.max(m, b.entries), 0)}` : "-"), right: true },
      { header: "MAX/MEAN", value: (r) => r.maxOverMean.toFixed(3) },
      { header: "EMPTY", value: (r) => r.empty },
    ], l.maglev));
  }
  return out.join("\n");
}

/** The listing as JSON lines, one record each ("lb-service", "lb-backend", "lb-revnat", "lb-maglev"). */
export function lbListingJson(l: LbListing): string[] {
  return [
    ...l.services.map((s) => toJson({ type: "lb-service", ...s })),
    ...l.backends.map((b) => toJson({ type: "lb-backend", ...b })),
    ...l.revNat.map((n) => toJson({ type: "lb-revnat", ...n })),
    ...l.maglev.map((m) => toJson({ type: "lb-maglev", ...m })),
  ];
}

/** `membrane bpf lb list [--pin-dir D] [--json]` */
export function registerBpfLb(bpf: Command): void {
  const lb = bpf.command("lb").description("the kernel's load-balancing maps (pinned)");
  refuseOtherVerbs(lb, (got) => `bpf lb: expected "bpf lb list", got "bpf lb ${got[0] ?? ""}"`.trimEnd());
  example(lb, "membrane bpf lb list");
  const list = lb.command("list").description("services with their slots, backends, reverse NAT and Maglev rows, record by record")
    .option("--pin-dir <dir>", "where the maps are pinned (default /sys/fs/bpf/membrane, or $MEMBRANE_BPFFS)");
  jsonOption(list, "JSON lines: lb-service, lb-backend, lb-revnat and lb-maglev records");
  example(list, "membrane bpf lb list", "membrane bpf lb list --pin-dir /sys/fs/bpf/membrane --json");
  list.action((o: { pinDir?: string; json: boolean }, self: Command) => {
    const io = outputOf(self);
    const dir = o.pinDir ?? defaultPinDir();
    const listing = readLbListing(new PinnedLbTables(dir));
    if (o.json) lbListingJson(listing).forEach((l) => io.out(l));
    else io.out(formatLbListing(listing, `Kernel (${dir})`));
  });
}

interface ServiceLine { owner: ServiceInfo; first: boolean; backend?: ServiceInfo["backends"][number] }

/** Services as a table: one line per backend, the service's columns on its first. */
export function formatServices(services: ServiceInfo[]): string {
  const lines = services.flatMap((s): ServiceLine[] =>
    s.backends.length ? s.backends.map((b, i) => ({ owner: s, first: i === 0, backend: b })) : [{ owner: s, first: true }]);
  const onFirst = (l: ServiceLine, text: () => string) => (l.first ? text() : "");
  return renderTable<ServiceLine>([
    { header: "ID", value: (l) => onFirst(l, () => String(l.owner.revNatIndex)), right: true },
    { header: "FRONTEND", value: (l) => onFirst(l, () => frontendText({ family: l.owner.vip.includes(":") ? 6 : 4, ...l.owner })) },
    { header: "ALGORITHM", value: (l) => onFirst(l, () => l.owner.algorithm + (l.owner.maglevRow !== undefined ? ` (row ${l.owner.maglevRow})` : "")) },
    {
      header: "BACKENDS", value: (l) => {
        const b = l.backend;
        if (!b) return "(none: new flows are dropped, DROP_NO_SERVICE)";
        const slots = l.owner.slots.filter((x) => x === b.id).length;
        return `${b.id} => ${hostPort(b.addr, b.port)} (weight ${b.weight}${b.weight === 0 ? ", draining" : ""}, ${slots} slot${slots === 1 ? "" : "s"})`;
      },
    },
  ], lines);
}

/** `membrane service list --config <state file> [--json]` */
export function registerService(program: Command): void {
  const service = program.command("service").description("the services of a state file, as the service manager programs them");
  refuseOtherVerbs(service, (got) => `service: expected "service list", got "service ${got[0] ?? ""}"`.trimEnd());
  example(service, "membrane service list --config state.json");
  const list = service.command("list")
    .description("frontends, algorithm, backends with weights and slots, rev-NAT index (`membrane bpf lb list` reads the kernel's maps)")
    .option("--config <file>", "the state file (JSON) whose services to list")
    .option("--socket <path>", "without --config: ask the agent running on this socket (default /run/membrane/agent.sock)");
  jsonOption(list, "JSON lines, one service each");
  example(list, "membrane service list --config state.json", "membrane service list --config state.json --json");
  list.action(async (o: { config?: string; socket?: string; json: boolean }, self: Command) => {
    const io = outputOf(self);
    if (o.config === undefined) return askAgentList("services", o, io); // no state file: the running agent's
    const { options, services } = loadState(o.config);
    // No datapath: the manager computes ids, rev-NAT indexes and slots exactly as it would program them.
    const manager = new ServiceManager([], options.lb);
    applyServices(manager, services);
    const listed = manager.listServices();
    if (o.json) listed.forEach((s) => io.out(toJson(s)));
    else io.out(listed.length ? formatServices(listed) : `(no services in ${o.config})`);
  });
}
