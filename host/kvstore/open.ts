/**
 * The one way to open a kvstore: `embedded:<path>` (the default, one machine)
 * or `etcd:<endpoint>[,<endpoint>...]` (a cluster). Every command that uses
 * the kvstore takes the same spec string (`--kvstore`).
 */
import { InvalidInputError } from "../errors.js";
import type { KvStore } from "./store.js";
import { DEFAULT_EMBEDDED_PATH, type KvStoreSpec, type OpenKvStoreOptions } from "./options.js";
import { openEmbeddedKvStore } from "./embedded/embedded-store.js";
import { openEtcdKvStore } from "./etcd/etcd-store.js";

export { DEFAULT_EMBEDDED_PATH } from "./options.js";
export type { KvStoreSpec, OpenKvStoreOptions, EmbeddedOptions, EtcdOptions, EtcdTlsOptions } from "./options.js";

/**
 * Parses `embedded:<path>`, `embedded` (default path) or `etcd:<endpoints>`.
 * Endpoints are `host:port` or `http(s)://host:port`, comma separated.
 * `what` names where the value came from ("--kvstore") for the error message.
 */
export function parseKvStoreSpec(spec: string | undefined, what = "--kvstore"): KvStoreSpec {
  const text = (spec ?? "").trim();
  if (text === "" || text === "embedded") return { backend: "embedded", path: DEFAULT_EMBEDDED_PATH };
  const colon = text.indexOf(":");
  const kind = colon < 0 ? text : text.slice(0, colon);
  const rest = colon < 0 ? "" : text.slice(colon + 1);
  if (kind === "embedded") {
    return { backend: "embedded", path: rest === "" ? DEFAULT_EMBEDDED_PATH : rest };
  }
  if (kind === "etcd") {
    const endpoints = rest
      .split(",")
      .map((e) => e.trim())
      .filter((e) => e !== "");
    if (endpoints.length === 0) {
      throw new InvalidInputError(`${what}: "etcd:" needs at least one endpoint, e.g. etcd:127.0.0.1:2379`);
    }
    for (const e of endpoints) {
      if (!/^(https?:\/\/)?[A-Za-z0-9.\-_\[\]:]+:\d{1,5}$/.test(e)) {
        throw new InvalidInputError(`${what}: etcd endpoint "${e}" is not host:port or http(s)://host:port`);
      }
    }
    return { backend: "etcd", endpoints };
  }
  throw new InvalidInputError(`${what}: "${text}" is neither embedded:<path> nor etcd:<endpoint,...>`);
}

/** Opens the store a spec names (see parseKvStoreSpec). */
export async function openKvStore(spec: string | KvStoreSpec, options: OpenKvStoreOptions = {}): Promise<KvStore> {
  const parsed = typeof spec === "string" ? parseKvStoreSpec(spec) : spec;
  if (parsed.backend === "embedded") return openEmbeddedKvStore(parsed.path, options.embedded);
  return openEtcdKvStore(parsed.endpoints, options.etcd);
}
