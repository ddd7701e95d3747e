/**
 * `membrane bpf template list` (alias `bpf sha list`, as Cilium's `bpf sha`)
 * and `membrane bpf template get <hash>`: the compiled endpoint-program
 * templates in the templates dir, their key, sources, compile-time shape and
 * the endpoints instantiated from them. Registered on the `bpf` command by
 * main (commander 14).
 */
import type { Command } from "commander";
import { example, jsonOption, outputOf, refuseOtherVerbs } from "./command.js";
import { InvalidInputError } from "../errors.js";
import { DEFAULT_TEMPLATES_DIR, TemplateCache, type TemplateEntry } from "../kernel/templates/cache.js";
import { describeShape } from "../kernel/templates/shape.js";
import { renderTable, toJson } from "../format/table.js";

interface TemplateCliOptions {
  templatesDir: string;
  json: boolean;
}

/** One line per template: short hash, program, shape, status, endpoints. */
export function formatTemplates(entries: readonly TemplateEntry[]): string {
  return renderTable<TemplateEntry>(
    [
      { header: "HASH", value: (e) => e.key.slice(0, 12) },
      { header: "PROGRAM", value: (e) => e.meta?.program ?? "?" },
      { header: "CONFIGURATION", value: (e) => (e.meta ? describeShape(e.meta.shape) : "?") },
      { header: "SOURCES", value: (e) => (e.meta ? `${e.meta.sources.length} files` : "?"), right: false },
      { header: "COMPILED", value: (e) => e.meta?.compiledAt ?? "?" },
      { header: "STATUS", value: (e) => e.status },
      { header: "ENDPOINTS", value: (e) => e.endpoints.map((p) => p.id).join(",") || "-", right: false },
    ],
    [...entries],
  );
}

/** Everything about one template, for people. */
export function formatTemplate(e: TemplateEntry): string {
  const lines = [`template ${e.key}`, `  directory:     ${e.dir}`, `  status:        ${e.status}`];
  if (e.meta) {
    const m = e.meta;
    lines.push(
      `  program:       ${m.program} (${m.objectBytes} bytes, sha256 ${m.objectSha256.slice(0, 16)})`,
      `  configuration: ${describeShape(m.shape)} (${m.defines.join(" ")})`,
      `  compiler:      ${m.compiler.split("\n").slice(0, 2).join(", ")} ${m.flags.join(" ")}`,
      `  compiled:      ${m.compiledAt} in ${m.compileMs} ms`,
      `  sources:`,
      ...m.sources.map((s) => `    ${s.sha256.slice(0, 12)}  ${s.path}`),
    );
  }
  lines.push(`  endpoints:     ${e.endpoints.length ? "" : "none"}`);
  if (e.endpoints.length) {
    const table = renderTable(
      [
        { header: "ID", value: (p: TemplateEntry["endpoints"][number]) => p.id },
        { header: "IDENTITY", value: (p) => p.identity },
        { header: "IPV4", value: (p) => p.ipv4 ?? "-" },
        { header: "IPV6", value: (p) => p.ipv6 ?? "-" },
        { header: "MAC", value: (p) => p.mac },
        { header: "IFINDEX", value: (p) => p.ifindex },
        { header: "INSTANTIATED", value: (p) => p.instantiatedAt },
      ],
      e.endpoints,
    );
    lines.push(...table.split("\n").map((l) => `    ${l}`));
  }
  return lines.join("\n");
}

/**
 * Endpoint id -> the template it was instantiated from (full hash), for the
 * TEMPLATE column of `membrane bpf endpoint list`. Empty when the templates
 * dir does not exist (a node that never ran the kernel datapath).
 */
export function endpointTemplates(templatesDir: string = DEFAULT_TEMPLATES_DIR): Map<number, string> {
  const out = new Map<number, string>();
  for (const entry of new TemplateCache({ dir: templatesDir }).list()) for (const ep of entry.endpoints) out.set(ep.id, entry.key);
  return out;
}

/** `membrane bpf template list|get` (alias `bpf sha`). */
export function registerBpfTemplate(bpf: Command): Command {
  const template = bpf
    .command("template")
    .description("compiled endpoint-program templates, compiled once per configuration and specialised per endpoint at load (alias: sha)");
  template.alias("sha");
  refuseOtherVerbs(template, (got) => `bpf template: expected "list" or "get <hash>", got "${got[0] ?? ""}"`);
  example(template, "membrane bpf template list", "membrane bpf sha get 3fa2c1");
  const dirOption = (c: Command) => c.option("--templates-dir <dir>", "where the templates live", DEFAULT_TEMPLATES_DIR);

  const list = dirOption(template.command("list").description("every template: hash, program, configuration, sources, status and the endpoints using it"));
  jsonOption(list, "one JSON object per template");
  example(list, "membrane bpf template list", "membrane bpf sha list --json --templates-dir /var/lib/membrane/templates");
  list.action((opts: TemplateCliOptions, self: Command) => {
    const io = outputOf(self);
    const entries = new TemplateCache({ dir: opts.templatesDir }).list();
    if (opts.json) entries.forEach((e) => io.out(toJson(e)));
    else io.out(entries.length ? formatTemplates(entries) : `(no templates in ${opts.templatesDir})`);
  });

  const get = dirOption(
    template
      .command("get")
      .argument("[hash]", "the template's hash or a unique prefix of it (at least 4 hex digits)")
      .usage("<hash> [options]")
      .description("one template: its sources with their hashes, compiler, flags, configuration and endpoints"),
  );
  jsonOption(get, "the template as one JSON object");
  example(get, "membrane bpf template get 3fa2c1", "membrane bpf sha get 3fa2c1 --json");
  get.action((hash: string | undefined, opts: TemplateCliOptions, self: Command) => {
    if (hash === undefined) throw new InvalidInputError("bpf template get: expected a template hash (see `membrane bpf template list`)");
    const entry = new TemplateCache({ dir: opts.templatesDir }).find(hash);
    outputOf(self).out(opts.json ? toJson(entry) : formatTemplate(entry));
  });
  return template;
}
