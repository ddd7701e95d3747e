/** Shared by the cluster-agent tests. */
import { entryKey, type EngineChange } from "../../host/policy/engine.js";
import type { EndpointRecord, PolicyEntry } from "../../host/policy/types.js";
import type { ServiceFrontend, ServiceSpec } from "../../host/lb/manager.js";
import type { DatapathSink } from "../../host/cluster/datapath-sink.js";
import type { Route } from "../../host/cluster/routes.js";
import type { PeerSpec } from "../../host/encrypt/peers-file.js";
import { keys } from "../../host/kvstore/keys.js";
import { encodeRecord } from "../../host/kvstore/records/codec.js";
import { masterValue } from "../../host/kvstore/identities.js";
import type { KvStore } from "../../host/kvstore/store.js";
import { localPodRecord } from "../../host/operator/convert.js";
import { podIdentityLabels } from "../../host/operator/pod-identity.js";

/** A datapath that only remembers: its tables after every change, and each change as it came. */
export class RecordingSink implements DatapathSink {
  readonly services = new Map<string, ServiceSpec>();
  readonly endpoints = new Map<number, EndpointRecord>();
  readonly policy = new Map<number, Map<string, PolicyEntry>>();
  readonly ipcache = new Map<string, number>();
  readonly routes = new Map<string, string>();
  readonly policyChanges: EngineChange[] = [];
  readonly serviceChanges: { upsert: ServiceSpec[]; remove: ServiceFrontend[] }[] = [];
  readonly routeChanges: { replace: Route[]; remove: Route[] }[] = [];
  /** The ESP peers, each set as it came (only an encrypting agent core sends them). */
  readonly peerChanges: PeerSpec[][] = [];
  /** "peers" and "routes" in the order they were applied. */
  readonly order: string[] = [];
  /** Set: applyPeers refuses with this message (a forwarder that cannot take them). */
  refusePeers?: string;

  get calls(): number {
    return this.policyChanges.length + this.serviceChanges.length + this.routeChanges.length + this.peerChanges.length;
  }

  async applyServices(upsert: ServiceSpec[], remove: ServiceFrontend[]): Promise<void> {
    this.serviceChanges.push({ upsert, remove });
    for (const f of remove) this.services.delete(`${f.vip}|${f.port}|${f.proto}`);
    for (const s of upsert) this.services.set(`${s.vip}|${s.port}|${s.proto}`, s);
  }

  async applyPolicy(change: EngineChange): Promise<void> {
    this.policyChanges.push(change);
    for (const [id, d] of change.policy.changes) {
      let t = this.policy.get(id);
      if (!t) this.policy.set(id, (t = new Map()));
      for (const e of d.remove) t.delete(entryKey(e));
      for (const e of d.add) t.set(entryKey(e), e);
    }
    for (const id of change.endpoints.remove) {
      this.endpoints.delete(id);
      this.policy.delete(id);
    }
    for (const r of change.endpoints.upsert) this.endpoints.set(r.id, r);
    for (const c of change.ipcache.remove) this.ipcache.delete(c);
    for (const r of change.ipcache.upsert) this.ipcache.set(r.cidr, r.identity);
  }

  async applyPeers(peers: PeerSpec[]): Promise<void> {
    if (this.refusePeers) throw new Error(this.refusePeers);
    this.peerChanges.push(peers);
    this.order.push("peers");
  }

  async applyRoutes(replace: Route[], remove: Route[]): Promise<void> {
    this.order.push("routes");
    this.routeChanges.push({ replace, remove });
    for (const r of remove) this.routes.delete(r.prefix);
    for (const r of replace) this.routes.set(r.prefix, r.via);
  }
}

/** A NetworkPolicy record with `spec`, as the operator writes it. */
function putNetworkPolicy(s: KvStore, namespace: string, name: string, spec: Record<string, unknown>) {
  return s.put(
    keys.policy(namespace, name),
    encodeRecord("policy", {
      name: `${namespace}/${name}`,
      document: { apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name, namespace }, spec },
    }),
  );
}

/** Writers of cluster records, as the operator and other nodes' agents would leave them. */
export const put = {
  node: (s: KvStore, name: string, ip: string, cidr: string) =>
    s.put(keys.node("default", name), encodeRecord("node", { name, cluster: "default", addresses: [{ type: "InternalIP", ip }], ipv4AllocCidr: cidr, encryptionKey: 0 })),
  /** A pod record under its node, as the operator writes it from the pod's manifest. */
  pod: (s: KvStore, namespace: string, name: string, nodeName: string, ip: string, labels: Record<string, string>) => {
    const local = localPodRecord({ kind: "Pod", namespace, name, nodeName, ips: [ip], labels });
    return s.put(local.key, encodeRecord("pod", local.record));
  },
  deletePod: (s: KvStore, namespace: string, name: string, nodeName: string) => s.delete(keys.pod("default", nodeName, namespace, name)),
  /** Another node's pod: its identity master and its ipcache entry. */
  remotePod: async (s: KvStore, namespace: string, name: string, id: number, ip: string, hostIp: string, labels: Record<string, string>) => {
    await s.put(keys.identityMaster(id), masterValue(podIdentityLabels({ namespace, labels })));
    return s.put(keys.ipcache(`${ip}/32`), encodeRecord("ipcache", { prefix: `${ip}/32`, identity: id, hostIp, encryptionKey: 0, namespace, podName: name }));
  },
  service: (s: KvStore, namespace: string, name: string, vip: string, port: number, backends: [string, number][]) =>
    s.put(
      keys.service("default", namespace, name),
      encodeRecord("service", {
        cluster: "default", namespace, name,
        frontends: [{ ip: vip, port, protocol: "TCP", name: "http" }],
        backends: backends.map(([ip, p]) => ({ ip, port: p, protocol: "TCP", name: "http" })),
      }),
    ),
  /** A NetworkPolicy: pods labelled `app=<target>` accept TCP `port` from pods labelled `app=<from>`. */
  policy: (s: KvStore, namespace: string, name: string, target: string, from: string, port: number) =>
    putNetworkPolicy(s, namespace, name, {
      podSelector: { matchLabels: { app: target } },
      ingress: [{ from: [{ podSelector: { matchLabels: { app: from } } }], ports: [{ port, protocol: "TCP" }] }],
    }),
  /** A NetworkPolicy: pods labelled `app=<source>` may open TCP `port` only toward pods labelled `app=<to>`. */
  egressPolicy: (s: KvStore, namespace: string, name: string, source: string, to: string, port: number) =>
    putNetworkPolicy(s, namespace, name, {
      podSelector: { matchLabels: { app: source } },
      policyTypes: ["Egress"],
      egress: [{ to: [{ podSelector: { matchLabels: { app: to } } }], ports: [{ port, protocol: "TCP" }] }],
    }),
};
