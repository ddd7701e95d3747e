/**
 * The conformance suite on a real etcd (Debian's, on loopback, free ports,
 * temp data dir, stopped by PID); the disconnect is a SIGKILL and restart.
 */
import { afterAll, beforeAll } from "vitest";
import { openKvStore } from "../../host/kvstore/open.js";
import type { KvStore } from "../../host/kvstore/store.js";
import { describeIf } from "../support/describe-if.js";
import { TestEtcd, etcdMissing } from "../support/etcd.js";
import { kvStoreConformance } from "./conformance.js";

describeIf("etcd kvstore conformance", etcdMissing(), () => {
  let etcd: TestEtcd;
  let store: KvStore;
  beforeAll(async () => {
    etcd = await TestEtcd.start();
    store = await openKvStore(etcd.spec);
  });
  afterAll(async () => {
    await store?.close();
    await etcd?.stop();
  });

  kvStoreConformance(
    {
      open: () => openKvStore(etcd.spec),
      leaseTtl: 2,
      async interrupt(s, watch, whileDown) {
        await etcd.kill9();
        await etcd.restart();
        await whileDown();
        return { store: s, watch };
      },
    },
    () => store,
  );
});
