/**
 * A real etcd for tests: host/sys/etcd-process.ts (Debian's /usr/bin/etcd on
 * 127.0.0.1, free ports, a temporary data dir, stopped by its PID), with the
 * binary overridable by $MEMBRANE_TEST_ETCD.
 *
 * `etcdMissing()` feeds describeIf: outside CI a machine without etcd skips
 * with the reason, under CI=true the suite fails (a missing install step must
 * not pass as green).
 */
import { DEFAULT_ETCD_BINARY, EtcdProcess, etcdMissing as missingAt, type EtcdProcessTls } from "../../host/sys/etcd-process.js";

export { freePort } from "../../host/sys/etcd-process.js";
export type TestEtcdTls = EtcdProcessTls;

export const ETCD_BINARY = process.env.MEMBRANE_TEST_ETCD ?? DEFAULT_ETCD_BINARY;

export function etcdMissing(): string | undefined {
  return missingAt(ETCD_BINARY);
}

export type TestEtcd = EtcdProcess;
export const TestEtcd = {
  /** Starts a fresh etcd and waits until /health says true. */
  start: (options: { tls?: TestEtcdTls } = {}): Promise<EtcdProcess> => EtcdProcess.start({ ...options, binary: ETCD_BINARY }),
};
