/**
 * `membrane bpf endpoint list` and `membrane bpf policy get <endpoint>`: the
 * kernel datapath's endpoint and policy maps, read from their pins, as aligned
 * tables or JSON lines.
 */
import { parseArgs } from "node:util";
import { pinDir as defaultPinDir } from "../bpf/bpffs.js";
import { InvalidInputError } from "../errors.js";
import { PinnedPolicyTables } from "../kernel/pinned-policy.js";
import { endpointPolicy, listEndpoints } from "../policy/listing.js";
import { formatEndpoints, formatPolicy } from "../format/policy.js";
import { EXIT_OK, type Output } from "../format/output.js";
import { toJson } from "../format/table.js";

/** `membrane bpf endpoint list [--pin-dir D] [--json]` */
export function bpfEndpointCommand(args: string[], io: Output): number {
  const [verb, ...rest] = args;
  if (verb !== "list") throw new InvalidInputError(`bpf endpoint: expected "bpf endpoint list", got "bpf endpoint ${verb ?? ""}"`.trimEnd());
  const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { "pin-dir": { type: "string" }, json: { type: "boolean", default: false } } });
  if (positionals.length) throw new InvalidInputError(`bpf endpoint list: unexpected argument "${positionals[0]}"`);
  const rows = listEndpoints(new PinnedPolicyTables(values["pin-dir"] ?? defaultPinDir()));
  if (values.json) rows.forEach((r) => io.out(toJson(r)));
  else io.out(rows.length ? formatEndpoints(rows) : "(no endpoints)");
  return EXIT_OK;
}

/** `membrane bpf policy get <endpoint> [--pin-dir D] [--json]` */
export function bpfPolicyCommand(args: string[], io: Output): number {
  const [verb, ...rest] = args;
  if (verb !== "get") throw new InvalidInputError(`bpf policy: expected "bpf policy get <endpoint>", got "bpf policy ${verb ?? ""}"`.trimEnd());
  const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { "pin-dir": { type: "string" }, json: { type: "boolean", default: false } } });
  if (positionals.length !== 1) throw new InvalidInputError(`bpf policy get: expected one endpoint id, got ${positionals.length} arguments`);
  const id = Number(positionals[0]);
  if (!/^[0-9]+$/.test(positionals[0]) || id < 1 || id > 0xffff) throw new InvalidInputError(`bpf policy get: endpoint id must be 1..65535, got "${positionals[0]}"`);
  const rows = endpointPolicy(new PinnedPolicyTables(values["pin-dir"] ?? defaultPinDir()), id);
  if (values.json) rows.forEach((r) => io.out(toJson(r)));
  else io.out(rows.length ? formatPolicy(rows) : `(no policy entries for endpoint ${id}: with enforcement on, everything is denied)`);
  return EXIT_OK;
}
