/**
 * The kvstore options every command that uses the kvstore takes, with one
 * meaning everywhere: `--kvstore embedded:<path>|etcd:<endpoint,...>`, TLS
 * files, user and password (from a file or $MEMBRANE_KVSTORE_PASSWORD, so it
 * does not show in `ps`), and the client rate limit.
 */
import { existsSync, readFileSync } from "node:fs";
import { Command, Option } from "commander";
import { InvalidInputError } from "../errors.js";
import { DisciplinedKvStore } from "../kvstore/disciplined-store.js";
import { DEFAULT_EMBEDDED_PATH, openKvStore, parseKvStoreSpec } from "../kvstore/open.js";
import type { EtcdOptions } from "../kvstore/options.js";
import { parseRateLimit } from "../kvstore/rate-limit.js";
import { MeteredKvStore } from "../kvstore/metered-store.js";
import type { Metrics } from "../metrics/registry.js";

export interface KvstoreCliOptions {
  kvstore?: string;
  kvstoreCa?: string;
  kvstoreCert?: string;
  kvstoreKey?: string;
  kvstoreUser?: string;
  kvstorePassword?: string;
  kvstorePasswordFile?: string;
  kvstoreQps?: string;
  kvstoreBurst?: string;
}

export function addKvstoreOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option("--kvstore <spec>", `embedded:<path> or etcd:<endpoint,...> (default embedded:${DEFAULT_EMBEDDED_PATH})`))
    .addOption(new Option("--kvstore-ca <file>", "etcd: PEM file of the CA that signed etcd's certificate"))
    .addOption(new Option("--kvstore-cert <file>", "etcd: client certificate (PEM) for mutual TLS"))
    .addOption(new Option("--kvstore-key <file>", "etcd: client key (PEM) for mutual TLS"))
    .addOption(new Option("--kvstore-user <name>", "etcd: user name"))
    .addOption(new Option("--kvstore-password <password>", "etcd: password (visible in ps: prefer --kvstore-password-file or $MEMBRANE_KVSTORE_PASSWORD)"))
    .addOption(new Option("--kvstore-password-file <file>", "etcd: file holding the password (first line)"))
    .addOption(new Option("--kvstore-qps <n>", 'client rate limit in operations per second (default 20; "unlimited" to turn it off)'))
    .addOption(new Option("--kvstore-burst <n>", "client rate limit burst (default 20)"));
}

function readable(file: string, option: string): string {
  if (!existsSync(file)) throw new InvalidInputError(`${option}: ${file} does not exist`);
  return file;
}

/** Validates the options fully, then opens the store behind membrane's client discipline. */
export async function openKvstoreFromOptions(o: KvstoreCliOptions, env: NodeJS.ProcessEnv = process.env, metrics?: Pick<Metrics, "kvstoreOperations">): Promise<DisciplinedKvStore> {
  const spec = parseKvStoreSpec(o.kvstore, "--kvstore");
  const rateLimit = parseRateLimit({ qps: o.kvstoreQps, burst: o.kvstoreBurst }, "--kvstore-qps/--kvstore-burst");
  const etcdOnly = (["kvstoreCa", "kvstoreCert", "kvstoreKey", "kvstoreUser", "kvstorePassword", "kvstorePasswordFile"] as const).filter((k) => o[k] !== undefined);
  if (spec.backend === "embedded" && etcdOnly.length > 0) {
    const flag = etcdOnly[0]!.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
    throw new InvalidInputError(`--${flag}: applies to etcd only (--kvstore is embedded:${spec.path})`);
  }
  let etcd: EtcdOptions | undefined;
  if (spec.backend === "etcd") {
    if ((o.kvstoreCert === undefined) !== (o.kvstoreKey === undefined)) {
      throw new InvalidInputError("--kvstore-cert and --kvstore-key: give both (mutual TLS) or neither");
    }
    if (o.kvstorePassword !== undefined && o.kvstorePasswordFile !== undefined) {
      throw new InvalidInputError("--kvstore-password and --kvstore-password-file: give one of them");
    }
    let password = o.kvstorePassword ?? env.MEMBRANE_KVSTORE_PASSWORD;
    if (o.kvstorePasswordFile !== undefined) {
      password = readFileSync(readable(o.kvstorePasswordFile, "--kvstore-password-file"), "utf8").split("\n")[0]!.trim();
      if (password === "") throw new InvalidInputError(`--kvstore-password-file: ${o.kvstorePasswordFile} is empty`);
    }
    if (password !== undefined && o.kvstoreUser === undefined) throw new InvalidInputError("--kvstore-user: required with a password");
    const tls =
      o.kvstoreCa !== undefined || o.kvstoreCert !== undefined
        ? {
            caFile: o.kvstoreCa === undefined ? undefined : readable(o.kvstoreCa, "--kvstore-ca"),
            certFile: o.kvstoreCert === undefined ? undefined : readable(o.kvstoreCert, "--kvstore-cert"),
            keyFile: o.kvstoreKey === undefined ? undefined : readable(o.kvstoreKey, "--kvstore-key"),
          }
        : undefined;
    etcd = { tls, username: o.kvstoreUser, password };
  }
  const inner = await openKvStore(spec, { etcd });
  return new DisciplinedKvStore(metrics ? new MeteredKvStore(inner, metrics.kvstoreOperations) : inner, { rateLimit });
}
