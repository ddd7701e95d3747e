/**
 * `membrane bpf endpoint list` and `membrane bpf policy get <endpoint>`: the
 * kernel datapath's endpoint and policy maps, read from their pins, as aligned
 * tables or JSON lines.
 */
import { Command } from "commander";
import { pinDir as defaultPinDir } from "../bpf/bpffs.js";
import { InvalidInputError } from "../errors.js";
import { PinnedPolicyTables } from "../kernel/pinned-policy.js";
import { endpointPolicy, listEndpoints } from "../policy/listing.js";
import { formatEndpoints, formatPolicy } from "../format/policy.js";
import { toJson } from "../format/table.js";
import { example, jsonOption, outputOf, refuseOtherVerbs } from "./command.js";
import { endpointTemplates } from "./bpf-template.js";
import { DEFAULT_TEMPLATES_DIR } from "../kernel/templates/cache.js";

const PIN_DIR_HELP = "where the maps are pinned (default /sys/fs/bpf/membrane, or $MEMBRANE_BPFFS)";

/** `membrane bpf endpoint list [--pin-dir D] [--json]` */
export function registerBpfEndpoint(bpf: Command): void {
  const endpoint = bpf.command("endpoint").description("local endpoints in the kernel's maps (pinned)");
  refuseOtherVerbs(endpoint, (got) => `bpf endpoint: expected "bpf endpoint list", got "bpf endpoint ${got[0] ?? ""}"`.trimEnd());
  example(endpoint, "membrane bpf endpoint list");
  const list = endpoint.command("list").description("endpoints by id: identity, addresses, ifindex, MAC, policy enforcement, the template its program was instantiated from")
    .option("--pin-dir <dir>", PIN_DIR_HELP)
    .option("--templates-dir <dir>", "where the BPF templates live", DEFAULT_TEMPLATES_DIR);
  jsonOption(list, "JSON lines, one endpoint each");
  example(list, "membrane bpf endpoint list", "membrane bpf endpoint list --pin-dir /sys/fs/bpf/membrane --json");
  list.action((o: { pinDir?: string; templatesDir: string; json: boolean }, self: Command) => {
    const io = outputOf(self);
    const rows = listEndpoints(new PinnedPolicyTables(o.pinDir ?? defaultPinDir()));
    const templates = endpointTemplates(o.templatesDir);
    if (o.json) rows.forEach((r) => io.out(toJson(templates.has(r.id) ? { ...r, template: templates.get(r.id) } : r)));
    else io.out(rows.length ? formatEndpoints(rows, templates) : "(no endpoints)");
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
