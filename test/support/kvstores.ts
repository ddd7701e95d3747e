/**
 * Kvstores for tests, on the two backends: an embedded store in a fresh temp
 * dir, or a real etcd on loopback (TestEtcd). Each comes with the one way to
 * remove it again, for afterAll.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openKvStore } from "../../host/kvstore/open.js";
import type { KvStore } from "../../host/kvstore/store.js";
import { TestEtcd, etcdMissing } from "./etcd.js";

/** A backend as a store spec (what `--kvstore` takes), for tests that open it themselves or hand it to the CLI. */
export interface Backend {
  name: "embedded" | "etcd";
  /** Why the backend cannot run here, or undefined. */
  missing: string | undefined;
  setup(): Promise<string>;
  teardown(): Promise<void>;
}

/** Both backends; each setup() makes a fresh one (`tag` names the embedded store's temp dir). */
export function backends(tag = "membrane-kvstore-"): Backend[] {
  let dir = "";
  let etcd: TestEtcd | undefined;
  return [
    {
      name: "embedded",
      missing: undefined,
      setup: async () => {
        dir = mkdtempSync(join(tmpdir(), tag));
        return `embedded:${join(dir, "store")}`;
      },
      teardown: async () => rmSync(dir, { recursive: true, force: true }),
    },
    {
      name: "etcd",
      missing: etcdMissing(),
      setup: async () => {
        etcd = await TestEtcd.start();
        return etcd.spec;
      },
      teardown: async () => {
        await etcd?.stop();
      },
    },
  ];
}

/** An open store in a temp dir of its own (also the place for a test's other files); close() closes it and removes the dir. */
export interface TempStore {
  store: KvStore;
  dir: string;
  close(): Promise<void>;
}

export async function tempEmbeddedStore(tag: string): Promise<TempStore> {
  const dir = mkdtempSync(join(tmpdir(), tag));
  try {
    const store = await openKvStore(`embedded:${join(dir, "store")}`);
    return {
      store,
      dir,
      close: async () => {
        await store.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
