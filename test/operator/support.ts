/**
 * Shared by the operator tests: the two backends (test/support/kvstores.ts),
 * a small cluster as manifest files, the CLI run in-process through
 * commander, and an agent's part (registering its node under a lease,
 * allocating its pods' identities on the cluster allocator) played with the
 * real allocator.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { registerApply } from "../../host/cli/apply.js";
import type { Output } from "../../host/format/output.js";
import { DisciplinedKvStore } from "../../host/kvstore/disciplined-store.js";
import { ClusterIdentityAllocator } from "../../host/kvstore/identities.js";
import { keys } from "../../host/kvstore/keys.js";
import { UNLIMITED } from "../../host/kvstore/rate-limit.js";
import type { KvStore, Lease } from "../../host/kvstore/store.js";
import { podIdentityLabels } from "../../host/operator/pod-identity.js";
import { ownedPrefixes } from "../../host/operator/reconciler.js";
import { openKvStore } from "../../host/kvstore/open.js";
import { backends as kvBackends, type Backend } from "../support/kvstores.js";

/** The operator tests' backends: test/support/kvstores.ts, with the operator's temp-dir name. */
export const backends = () => kvBackends("membrane-operator-");

export const NODES = `
apiVersion: v1
kind: Node
metadata: { name: node-a, labels: { zone: a } }
spec: { podCIDR: 10.1.0.0/24 }
status: { addresses: [{ type: InternalIP, address: 10.0.0.1 }] }
---
apiVersion: v1
kind: Node
metadata: { name: node-b, labels: { zone: b } }
spec: { podCIDR: 10.2.0.0/24 }
status: { addresses: [{ type: InternalIP, address: 10.0.0.2 }] }
`;

export function pods(webLabel = "web", annotation = "v1"): string {
  return `
apiVersion: v1
kind: Pod
metadata: { name: web-1, namespace: shop, labels: { app: ${webLabel} }, annotations: { note: ${annotation} } }
spec: { nodeName: node-a }
status: { podIP: 10.1.0.5, phase: Running }
---
apiVersion: v1
kind: Pod
metadata: { name: web-2, namespace: shop, labels: { app: web } }
spec: { nodeName: node-b }
status: { podIP: 10.2.0.6 }
---
apiVersion: v1
kind: Pod
metadata: { name: front-1, namespace: shop, labels: { app: front } }
spec: { nodeName: node-a }
status: { podIP: 10.1.0.7 }
`;
}

export function service(extraNotReady = false): string {
  return `
apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec: { clusterIP: 10.96.0.10, ports: [{ name: http, port: 80, targetPort: 8080 }] }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: web-abc, namespace: shop, labels: { kubernetes.io/service-name: web } }
addressType: IPv4
endpoints:
  - { addresses: [10.1.0.5], nodeName: node-a }
  - { addresses: [10.2.0.6], nodeName: node-b }
${extraNotReady ? "  - { addresses: [10.2.0.9], nodeName: node-b, conditions: { ready: false } }" : ""}
ports: [{ name: http, port: 8080 }]
`;
}

export const POLICY = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: web, namespace: shop, annotations: { owner: team-a } }
spec:
  podSelector: { matchLabels: { app: web } }
  ingress: [{ from: [{ podSelector: { matchLabels: { app: front } } }], ports: [{ port: 8080 }] }]
`;

/** A directory of manifest files, one per concern, rewritable. */
export function manifestDir(): { dir: string; write(name: string, text: string): string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), "membrane-manifests-"));
  mkdirSync(dir, { recursive: true });
  return {
    dir,
    write: (name, text) => {
      const path = join(dir, name);
      writeFileSync(path, text);
      return path;
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** `membrane apply|delete ...` in-process; an error thrown by the action is returned, as main.ts would report it. */
export async function cli(args: string[]): Promise<{ out: string[]; error?: Error; help: string }> {
  const out: string[] = [];
  let help = "";
  const io: Output = { out: (l) => out.push(l), err: (l) => out.push(l) };
  const program = new Command("membrane").exitOverride();
  registerApply(program, { output: () => io });
  const configure = (c: Command) => {
    c.exitOverride().configureOutput({ writeOut: (s) => (help += s), writeErr: (s) => out.push(s) });
    c.commands.forEach(configure);
  };
  configure(program);
  try {
    await program.parseAsync(["node", "membrane", ...args]);
  } catch (e) {
    if ((e as { code?: string }).code === "commander.helpDisplayed") return { out, help };
    return { out, error: e as Error, help };
  }
  return { out, help };
}

/** What an agent does for the operator: its node key under its lease (optional) and its pods' identities. */
export class FakeAgent {
  readonly allocator: ClusterIdentityAllocator;
  private constructor(readonly node: string, readonly lease: Lease, store: KvStore) {
    this.allocator = new ClusterIdentityAllocator(new DisciplinedKvStore(store, { rateLimit: UNLIMITED }), { node, lease });
  }

  static async start(store: KvStore, node: string, options: { register?: { ip: string; cidr: string }; ttl?: number } = {}): Promise<FakeAgent> {
    const lease = await store.grantLease(options.ttl ?? 60);
    const agent = new FakeAgent(node, lease, store);
    if (options.register) {
      const record = { name: node, cluster: "default", addresses: [{ type: "InternalIP", ip: options.register.ip }], ipv4AllocCidr: options.register.cidr, encryptionKey: 0 };
      await store.put(keys.node("default", node), JSON.stringify(record), { lease: lease.id });
    }
    return agent;
  }

  async allocate(namespace: string, labels: Record<string, string>): Promise<number> {
    return (await this.allocator.allocate(podIdentityLabels({ namespace, labels }))).id;
  }

  async release(namespace: string, labels: Record<string, string>): Promise<void> {
    await this.allocator.release(podIdentityLabels({ namespace, labels }));
  }
}

/**
 * Where the operator tests start from: a fresh store on `backend`, the
 * cluster's manifests as files (not yet applied), and the agents of node-a
 * and node-b; node-b's agent registers its node under its lease, node-a's
 * record comes from its manifest.
 */
export interface OperatorCluster {
  spec: string;
  store: KvStore;
  files: ReturnType<typeof manifestDir>;
  agentA: FakeAgent;
  agentB: FakeAgent;
  /** Closes the store, removes the files and the backend. */
  close(): Promise<void>;
}

export async function operatorCluster(backend: Backend): Promise<OperatorCluster> {
  const spec = await backend.setup();
  const store = await openKvStore(spec);
  const files = manifestDir();
  const close = async () => {
    await store.close();
    files.remove();
    await backend.teardown();
  };
  try {
    files.write("nodes.yaml", NODES);
    files.write("pods.yaml", pods());
    files.write("service.yaml", service());
    files.write("policy.yaml", POLICY);
    const agentA = await FakeAgent.start(store, "node-a");
    const agentB = await FakeAgent.start(store, "node-b", { register: { ip: "10.0.0.2", cidr: "10.2.0.0/24" } });
    return { spec, store, files, agentA, agentB, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** Every key under the record prefixes the operator writes, with value and mod revision. */
export async function records(store: KvStore): Promise<Map<string, { value: unknown; modRevision: number }>> {
  const out = new Map<string, { value: unknown; modRevision: number }>();
  for (const prefix of ownedPrefixes("default")) {
    for (const kv of (await store.list(prefix)).kvs) out.set(kv.key, { value: JSON.parse(kv.value), modRevision: kv.modRevision });
  }
  return out;
}
