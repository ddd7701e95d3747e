/**
 * `membrane kvstore get|put|delete|list|watch`: the kvstore as a person sees
 * it, on either backend, through membrane's client (rate limit, retries).
 */
import { readFileSync } from "node:fs";
import { Command, Option } from "commander";
import { InvalidInputError } from "../errors.js";
import type { KeyValue, KvStore, WatchEvent } from "../kvstore/store.js";
import { addKvstoreOptions, openKvstoreFromOptions, type KvstoreCliOptions } from "./kvstore-options.js";
import { processOutput, type Output } from "./output.js";
import { renderTable } from "./table.js";

interface Common extends KvstoreCliOptions {
  json?: boolean;
  prefix?: boolean;
}

export interface RegisterKvstoreOptions {
  /** Where a command prints; the CLI's output by default. */
  output?: (cmd: Command) => Output;
  /** Ends `watch` (tests); SIGINT/SIGTERM otherwise. */
  watchSignal?: AbortSignal;
}

function exampleText(...lines: string[]): string {
  return `\nExample${lines.length > 1 ? "s" : ""}:\n${lines.map((l) => `  $ ${l}`).join("\n")}`;
}

function kvJson(kv: KeyValue): string {
  return JSON.stringify({ key: kv.key, value: kv.value, createRevision: kv.createRevision, modRevision: kv.modRevision, version: kv.version, lease: kv.lease ?? null });
}

async function withStore<T>(o: Common, use: (store: KvStore) => Promise<T>): Promise<T> {
  const store = await openKvstoreFromOptions(o);
  try {
    return await use(store);
  } finally {
    await store.close();
  }
}

function printKvs(io: Output, kvs: KeyValue[], json: boolean | undefined): void {
  if (json) {
    for (const kv of kvs) io.out(kvJson(kv));
    return;
  }
  if (kvs.length === 0) {
    io.out("(no keys)");
    return;
  }
  io.out(renderTable<KeyValue>([
    { header: "KEY", value: (kv) => kv.key },
    { header: "MOD-REV", value: (kv) => kv.modRevision },
    { header: "LEASE", value: (kv) => kv.lease ?? "-" },
    { header: "VALUE", value: (kv) => (kv.value.length > 80 ? `${kv.value.slice(0, 77)}...` : kv.value) },
  ], kvs));
}

export function registerKvstore(program: Command, options: RegisterKvstoreOptions = {}): Command {
  const output = options.output ?? (() => processOutput);
  const kv = program.command("kvstore").description("read and write the kvstore (embedded or etcd) through membrane's client")
    .usage("<command> [options]");
  kv.addHelpText("after", exampleText("membrane kvstore list membrane/state/nodes/v1/ --kvstore etcd:127.0.0.1:2379"));

  const common = (cmd: Command, json = true) => {
    addKvstoreOptions(cmd);
    if (json) cmd.addOption(new Option("--json", "one JSON object per line").default(false));
    return cmd;
  };

  const get = common(kv.command("get").description("the value of <key>, or of every key under it with --prefix")
    .argument("<key>", "the key (or prefix with --prefix)")
    .addOption(new Option("--prefix", "every key starting with <key>").default(false)));
  get.addHelpText("after", exampleText("membrane kvstore get membrane/state/identities/v1/id/256", "membrane kvstore get --prefix membrane/state/nodes/v1/ --json"));
  get.action(async (key: string, o: Common, self: Command) => {
    const io = output(self);
    await withStore(o, async (store) => {
      if (o.prefix) return printKvs(io, (await store.list(key)).kvs, o.json);
      const found = await store.get(key);
      if (!found) throw new InvalidInputError(`kvstore get: no key ${JSON.stringify(key)} in ${store.location}`);
      io.out(o.json ? kvJson(found) : found.value);
    });
  });

  const list = common(kv.command("list").description("the keys under a prefix (all keys without one), with revisions and leases")
    .argument("[prefix]", "key prefix", ""));
  list.addHelpText("after", exampleText("membrane kvstore list membrane/state/identities/v1/", "membrane kvstore list --kvstore embedded:/tmp/kv --json"));
  list.action(async (prefix: string, o: Common, self: Command) => {
    await withStore(o, async (store) => printKvs(output(self), (await store.list(prefix)).kvs, o.json));
  });

  const put = common(kv.command("put").description("set <key> to <value> (or to the contents of --file; - reads standard input)")
    .argument("<key>", "the key").argument("[value]", "the value")
    .addOption(new Option("--file <file>", "read the value from a file (- for standard input)"))
    .addOption(new Option("--create", "only if the key does not exist yet").default(false)));
  put.addHelpText("after", exampleText("membrane kvstore put demo/greeting hello", "membrane kvstore put --create membrane/state/nodes/v1/default/n1 --file node.json --kvstore etcd:127.0.0.1:2379"));
  put.action(async (key: string, value: string | undefined, o: Common & { file?: string; create?: boolean }, self: Command) => {
    if ((value === undefined) === (o.file === undefined)) throw new InvalidInputError("kvstore put: give a <value> or --file (one of them)");
    const text = value ?? readFileSync(o.file === "-" ? 0 : o.file!, "utf8");
    const io = output(self);
    await withStore(o, async (store) => {
      if (o.create) {
        const r = await store.create(key, text);
        if (!r.succeeded) throw new InvalidInputError(`kvstore put --create: ${key} already exists (mod revision ${r.current?.modRevision})`);
        io.out(o.json ? JSON.stringify({ key, revision: r.revision }) : `created ${key} at revision ${r.revision}`);
        return;
      }
      const revision = await store.put(key, text);
      io.out(o.json ? JSON.stringify({ key, revision }) : `put ${key} at revision ${revision}`);
    });
  });

  const del = common(kv.command("delete").description("delete <key>, or every key under it with --prefix")
    .argument("<key>", "the key (or prefix with --prefix)")
    .addOption(new Option("--prefix", "every key starting with <key>").default(false)));
  del.addHelpText("after", exampleText("membrane kvstore delete demo/greeting", "membrane kvstore delete --prefix demo/"));
  del.action(async (key: string, o: Common, self: Command) => {
    if (o.prefix && key === "") throw new InvalidInputError("kvstore delete --prefix: an empty prefix would delete everything; name one");
    const io = output(self);
    await withStore(o, async (store) => {
      const r = o.prefix ? await store.deletePrefix(key) : await store.delete(key);
      io.out(o.json ? JSON.stringify({ key, prefix: !!o.prefix, deleted: r.deleted, revision: r.revision }) : `deleted ${r.deleted} key${r.deleted === 1 ? "" : "s"} at revision ${r.revision}`);
    });
  });

  const watch = common(kv.command("watch").description("print changes under a prefix as they happen (Ctrl-C ends); --rev starts from a past revision")
    .argument("[prefix]", "key prefix", "")
    .addOption(new Option("--rev <revision>", "first revision to show (default: changes from now on)")));
  watch.addHelpText("after", exampleText("membrane kvstore watch membrane/state/ --json", "membrane kvstore watch membrane/state/nodes/v1/ --rev 1 --kvstore etcd:127.0.0.1:2379"));
  watch.action(async (prefix: string, o: Common & { rev?: string }, self: Command) => {
    let fromRevision: number | undefined;
    if (o.rev !== undefined) {
      fromRevision = /^\d+$/.test(o.rev) ? Number(o.rev) : NaN;
      if (!Number.isSafeInteger(fromRevision) || fromRevision < 1) throw new InvalidInputError(`--rev: expected a revision >= 1, got "${o.rev}"`);
    }
    const io = output(self);
    await withStore(o, async (store) => {
      const w = store.watch(prefix, { fromRevision });
      const stop = () => void w.close();
      const signal = options.watchSignal;
      signal?.addEventListener("abort", stop, { once: true });
      if (!signal) {
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
      }
      try {
        for await (const ev of w) io.out(o.json ? eventJson(ev) : eventText(ev));
      } finally {
        process.off("SIGINT", stop);
        process.off("SIGTERM", stop);
      }
    });
  });
  return kv;
}

function eventJson(ev: WatchEvent): string {
  return JSON.stringify({ type: ev.type, key: ev.kv.key, value: ev.type === "put" ? ev.kv.value : null, revision: ev.revision, lease: ev.kv.lease ?? null });
}

function eventText(ev: WatchEvent): string {
  return ev.type === "put" ? `${ev.revision} PUT ${ev.kv.key} ${ev.kv.value}` : `${ev.revision} DELETE ${ev.kv.key}`;
}
