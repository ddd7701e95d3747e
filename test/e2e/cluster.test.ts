// The cluster demo's scenarios (IPv4 and IPv6) as end-to-end tests, on the embedded kvstore
// and on etcd: two node namespaces each with a real `membrane agent
// --kvstore --node` (dist/), an operator, examples/cluster applied; traffic
// across nodes (allowed and denied by the NetworkPolicy, enforced by the
// destination node's ingress), to the service VIP answered from the other
// node and to the external host (masqueraded: it sees the nodes' addresses); then, under a TCP stream, a backend added
// and one removed, a label change flipping the verdict, and n2's agent
// SIGKILLed and restarted with the stream surviving; nothing left behind.
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeIf } from "../support/describe-if.js";
import { TestEtcd, etcdMissing } from "../support/etcd.js";
import { sweep } from "../../host/sys/netns/lab.js";
import { demoUnavailable } from "../../host/demo/requirements.js";
import { cliMissing } from "../../host/demo/cluster/processes.js";
import { clusterDemoOk, runClusterDemo, type ClusterDemoSummary } from "../../host/demo/cluster/cluster-demo.js";

const MISSING = demoUnavailable() ?? cliMissing();

async function runAndCheck(prefix: string, kvstore: string | undefined): Promise<ClusterDemoSummary> {
  const out: string[] = [];
  const err: string[] = [];
  const r = await runClusterDemo({ out: (l) => out.push(l), err: (l) => err.push(l) }, { prefix, kvstore, json: true });
  if (!r.ran) throw new Error(r.reason);
  const s = r.summary;
  expect(err).toEqual([]);
  expect(s.interrupted).toBe(false);
  expect(s.traffic.filter((t) => t.result !== "ok")).toEqual([]);
  expect(s.traffic.map((t) => [t.what, t.expected])).toEqual([
    ...[4, 6].flatMap((f) => [
      [`IPv${f} frontend (n1) -> backend-b (n2) TCP 8080`, "allowed"],
      [`IPv${f} other (n1) -> backend-b (n2) TCP 8080`, "denied"],
      [`IPv${f} frontend (n1) -> backend-b (n2) TCP 9000 (no port in the policy)`, "denied"],
      [`IPv${f} frontend (n1) -> external host`, "allowed"],
      [`IPv${f} backend-b (n2) -> external host (through n1)`, "allowed"],
    ]),
    ["external host saw the nodes' addresses (masqueraded)", "allowed"],
    ["IPv4 frontend (n1) -> service 10.96.211.10:80 answered from n2", "allowed"],
    ["IPv6 frontend (n1) -> service [fd00:96:211::10]:80 answered from n2", "allowed"],
  ]);
  // A change not seen carries what the demo saw instead (its effect), so a failure says why.
  expect(s.changes.map((c) => [c.change, c.ms !== undefined || c.effect])).toEqual([
    ["backend-c (n2) added to the service", true],
    ["backend-a (n1) removed from the service", true],
    ["pod other relabelled app=frontend", true],
    ["n2's agent SIGKILLed and started again", true],
  ]);
  // After its removal backend-a answers none of the new connections to the VIP.
  expect(s.changes[1]!.effect).not.toMatch(/\bbea\b/);
  // ext routes only the nodes' link: both pods reached it masqueraded to their node's address.
  const nodes = ["10.211.0.1", "10.211.0.2", "fd00:211::1", "fd00:211::2"];
  expect(s.masquerade).toEqual({ addresses: nodes, seenByExt: nodes });
  expect(s.streams).toMatchObject([{ family: 4, ok: true, echoes: 400 }, { family: 6, ok: true, echoes: 400 }]);
  expect(s.cleanup).toEqual([]);
  expect(clusterDemoOk(s)).toBe(true);
  // The live view ran (one frame a second while the stream flowed).
  expect(out.some((l) => l.includes('"live"'))).toBe(true);
  return s;
}

describeIf("cluster demo on the embedded kvstore", MISSING, () => {
  const prefix = `dce${process.pid % 100000}`;
  afterAll(async () => {
    const left = await sweep(prefix);
    if (left.length) throw new Error(`the demo left: ${left.join(", ")}`);
  }, 30_000);

  it("runs every scenario and removes everything", async () => {
    await runAndCheck(prefix, undefined);
  }, 240_000);
});

describeIf("cluster demo on etcd", MISSING ?? etcdMissing(), () => {
  const prefix = `dcx${process.pid % 100000}`;
  let etcd: TestEtcd;
  beforeAll(async () => {
    etcd = await TestEtcd.start();
  }, 60_000);
  afterAll(async () => {
    await etcd?.stop();
    const left = await sweep(prefix);
    if (left.length) throw new Error(`the demo left: ${left.join(", ")}`);
  }, 30_000);

  it("runs every scenario through etcd (bridged into the node namespaces) and removes everything", async () => {
    const s = await runAndCheck(prefix, etcd.spec);
    expect(s.kvstore).toBe(etcd.spec);
  }, 240_000);
});
