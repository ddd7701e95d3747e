/**
 * Options of the kvstore backends, apart from the store interface so the
 * factory, the CLI and the backends share them without importing each other.
 */

/** Where the embedded store lives when nothing says otherwise. */
export const DEFAULT_EMBEDDED_PATH = "/var/lib/membrane/kvstore";

export interface EmbeddedOptions {
  /** Revisions of history kept by automatic compaction (default 1000, like kine). */
  readonly keepRevisions?: number;
  /** How often watchers look for writes of OTHER processes, ms (default 25). Writes of this process are delivered at once. */
  readonly pollIntervalMs?: number;
  /** How often this process looks for expired leases and compacts, ms (default 500, with jitter). */
  readonly maintenanceIntervalMs?: number;
  /** Maximum size of the database file in bytes (default 1 GiB; LMDB maps it lazily). */
  readonly mapSize?: number;
}

export interface EtcdTlsOptions {
  /** PEM file of the CA that signed etcd's server certificate. */
  readonly caFile?: string;
  /** PEM files of the client certificate and key (mutual TLS). */
  readonly certFile?: string;
  readonly keyFile?: string;
}

export interface EtcdOptions {
  readonly tls?: EtcdTlsOptions;
  readonly username?: string;
  readonly password?: string;
  /** Time to wait for a connection / a single call, ms (default 5000). */
  readonly dialTimeoutMs?: number;
}

export interface OpenKvStoreOptions {
  readonly embedded?: EmbeddedOptions;
  readonly etcd?: EtcdOptions;
}

/** A parsed `--kvstore` value. */
export type KvStoreSpec =
  | { readonly backend: "embedded"; readonly path: string }
  | { readonly backend: "etcd"; readonly endpoints: string[] };
