/**
 * The etcd backend's TLS and user/password options against a real etcd:
 * mutual TLS with a throwaway CA (openssl), and etcd's own auth enabled
 * with etcdctl. Wrong or missing credentials are clear errors, not hangs.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openKvStore } from "../../host/kvstore/open.js";
import { KvStoreError } from "../../host/kvstore/store.js";
import { InvalidInputError } from "../../host/errors.js";
import { describeIf } from "../support/describe-if.js";
import { TestEtcd, etcdMissing } from "../support/etcd.js";

const opensslMissing = (): string | undefined =>
  spawnSync("openssl", ["version"]).status === 0 ? undefined : "openssl is not installed (Debian: openssl)";

function openssl(args: string[], cwd: string): void {
  const r = spawnSync("openssl", args, { cwd, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`openssl ${args.join(" ")}: ${r.stderr}`);
}

/** A CA and one certificate for 127.0.0.1 usable as server and client certificate. */
function makeCerts(dir: string): { caFile: string; certFile: string; keyFile: string } {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  openssl(["req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=membrane-test-ca"], dir);
  openssl(["req", ...ec, "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=127.0.0.1"], dir);
  writeFileSync(join(dir, "ext.cnf"), "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n");
  openssl(["x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "node.pem", "-days", "1", "-extfile", "ext.cnf"], dir);
  return { caFile: join(dir, "ca.pem"), certFile: join(dir, "node.pem"), keyFile: join(dir, "node.key") };
}

describeIf("etcd kvstore over mutual TLS", etcdMissing() ?? opensslMissing(), () => {
  let dir: string;
  let etcd: TestEtcd;
  let certs: ReturnType<typeof makeCerts>;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "membrane-etcd-tls-"));
    certs = makeCerts(dir);
    etcd = await TestEtcd.start({ tls: { ...certs, clientCertAuth: true } });
  });
  afterAll(async () => {
    await etcd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("works with the CA and a client certificate", async () => {
    const s = await openKvStore(etcd.spec, { etcd: { tls: certs } });
    try {
      const r = await s.put("tls/k", "v");
      expect(await s.get("tls/k")).toMatchObject({ value: "v", modRevision: r });
    } finally {
      await s.close();
    }
  });

  it("fails clearly without a client certificate, and refuses a half-given pair or a missing file", async () => {
    const s = await openKvStore(etcd.spec, { etcd: { tls: { caFile: certs.caFile }, dialTimeoutMs: 2000 } });
    try {
      await expect(s.get("tls/k")).rejects.toBeInstanceOf(KvStoreError);
    } finally {
      await s.close();
    }
    await expect(openKvStore(etcd.spec, { etcd: { tls: { caFile: certs.caFile, certFile: certs.certFile } } })).rejects.toThrow(/go together/);
    await expect(openKvStore(etcd.spec, { etcd: { tls: { caFile: join(dir, "absent.pem") } } })).rejects.toBeInstanceOf(InvalidInputError);
  });
});

describeIf("etcd kvstore with user/password auth", etcdMissing(), () => {
  let etcd: TestEtcd;
  beforeAll(async () => {
    etcd = await TestEtcd.start();
    etcd.etcdctl(["user", "add", "root:s3cret"]);
    etcd.etcdctl(["auth", "enable"]);
  });
  afterAll(async () => {
    await etcd?.stop();
  });

  it("works with the right password", async () => {
    const s = await openKvStore(etcd.spec, { etcd: { username: "root", password: "s3cret" } });
    try {
      await s.put("auth/k", "v");
      expect((await s.get("auth/k"))?.value).toBe("v");
      const w = s.watch("auth/", { fromRevision: 1 });
      const it = w[Symbol.asyncIterator]();
      expect((await it.next()).value?.kv.value).toBe("v");
      await w.close();
    } finally {
      await s.close();
    }
  });

  it("fails with a clear error for a wrong password or none", async () => {
    for (const etcdOptions of [{ username: "root", password: "wrong" }, {}]) {
      const s = await openKvStore(etcd.spec, { etcd: { ...etcdOptions, dialTimeoutMs: 2000 } });
      try {
        const err = await s.get("auth/k").catch((e: unknown) => e);
        expect(err).toBeInstanceOf(KvStoreError);
        expect((err as Error).message).toMatch(/auth|permission|user/i);
      } finally {
        await s.close();
      }
    }
    await expect(openKvStore(etcd.spec, { etcd: { username: "root" } })).rejects.toThrow(/go together/);
  });
});
