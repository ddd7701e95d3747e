/**
 * Manifests -> slim records, the operator's conversion. Pure functions: the
 * result is the record input per state key; the ChangeFilter (at write time)
 * cuts it to the record's fields and drops it when it encodes the same as
 * what the store holds. Node labels, annotations and status other than
 * addresses never reach a record, so changing them writes nothing.
 *
 * Who writes what (Cilium 1.5's split):
 * - agents allocate the identity of their local pods on the cluster
 *   allocator (node key `identities/v1/value/<labels>/<node>` under the
 *   node's lease, labels from podIdentityLabels); the operator allocates
 *   nothing and only collects identities no node uses;
 * - the operator writes each pod under its node (`pods/v1/<cluster>/<node>/`:
 *   all its node's agent follows of the cluster's pods) as soon as it is applied;
 * - the operator writes endpoint and ipcache records for a pod once its
 *   node is up (a node record exists) and that node holds the pod's
 *   identity; service and policy records; and a node's record from its Node
 *   manifest unless the node's agent registered it under a lease.
 */
import { DEFAULT_CLUSTER, keys } from "../kvstore/keys.js";
import type { EndpointRecord } from "../kvstore/records/endpoint.js";
import type { IpcacheRecord } from "../kvstore/records/ipcache.js";
import type { NodeAddress, NodeRecord } from "../kvstore/records/node.js";
import type { PodRecord } from "../kvstore/records/pod.js";
import type { PolicyRecord } from "../kvstore/records/policy.js";
import type { ServicePort as RecordPort, ServiceRecord } from "../kvstore/records/service.js";
import type { EndpointsManifest, NodeManifest, PodManifest, PolicyManifest, ServiceManifest } from "./manifests/kinds.js";
import { slimPolicySource } from "./manifest-store.js";

/** State key -> record input (what encodeRecord takes). */
export type DesiredRecords = Map<string, unknown>;

const family = (ip: string): 4 | 6 => (ip.includes(":") ? 6 : 4);

export function nodeRecord(node: NodeManifest, cluster = DEFAULT_CLUSTER): { key: string; record: NodeRecord } {
  const addresses: NodeAddress[] = [];
  if (node.addresses.ipv4) addresses.push({ type: "InternalIP", ip: node.addresses.ipv4 });
  if (node.addresses.ipv6) addresses.push({ type: "InternalIP", ip: node.addresses.ipv6 });
  const record: NodeRecord = { name: node.name, cluster, addresses, encryptionKey: 0 };
  for (const cidr of node.podCidrs) {
    if (family(cidr) === 4) record.ipv4AllocCidr = cidr;
    else record.ipv6AllocCidr = cidr;
  }
  return { key: keys.node(cluster, node.name), record };
}

/** The address other nodes reach `node` at for a pod address of `podIp`'s family (the other family when it has none). */
export function hostIpFor(node: NodeRecord, podIp: string): string | undefined {
  const want = family(podIp);
  return (node.addresses.find((a) => family(a.ip) === want) ?? node.addresses[0])?.ip;
}

/**
 * The pod for its own node's agent, written whatever state its node and
 * identity are in: it is what that agent reads to create the endpoint and
 * allocate the identity the other records wait for.
 */
export function localPodRecord(pod: PodManifest, cluster = DEFAULT_CLUSTER): { key: string; record: PodRecord } {
  return {
    key: keys.pod(cluster, pod.nodeName, pod.namespace, pod.name),
    record: { namespace: pod.namespace, name: pod.name, node: pod.nodeName, labels: pod.labels, ips: pod.ips },
  };
}

/** A pod's endpoint record and one ipcache record per address (/32 or /128). */
export function podRecords(pod: PodManifest, identity: number, node: NodeRecord, cluster = DEFAULT_CLUSTER): DesiredRecords {
  const out: DesiredRecords = new Map();
  if (pod.ips.length === 0) return out; // not started yet: nothing to route to
  const endpoint: EndpointRecord = { cluster, namespace: pod.namespace, name: pod.name, node: pod.nodeName, identity };
  for (const ip of pod.ips) {
    if (family(ip) === 4) endpoint.ipv4 = ip;
    else endpoint.ipv6 = ip;
    const prefix = `${ip}/${family(ip) === 4 ? 32 : 128}`;
    const entry: IpcacheRecord = { prefix, identity, encryptionKey: node.encryptionKey, namespace: pod.namespace, podName: pod.name };
    const hostIp = hostIpFor(node, ip);
    if (hostIp !== undefined) entry.hostIp = hostIp;
    out.set(keys.ipcache(prefix), entry);
  }
  out.set(keys.endpoint(cluster, pod.namespace, pod.name), endpoint);
  return out;
}

function portOrder(a: RecordPort, b: RecordPort): number {
  return a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : a.port - b.port || (a.protocol < b.protocol ? -1 : a.protocol > b.protocol ? 1 : 0);
}

/**
 * A service: one frontend per cluster IP and port; backends are the ready
 * addresses of its slices, one per service port whose name the slice's
 * ports carry (EndpointSlice ports are named after the service port they
 * serve; a single unnamed port matches the unnamed service port). Backends
 * carry the service port's name, so an agent matches frontend to backends by
 * name. A headless service (no cluster IP) has nothing to balance: no record.
 */
export function serviceRecord(service: ServiceManifest, slices: readonly EndpointsManifest[], cluster = DEFAULT_CLUSTER): { key: string; record: ServiceRecord } | undefined {
  if (service.clusterIps.length === 0) return undefined;
  const named = (name: string) => (name === "" ? {} : { name });
  const frontends: RecordPort[] = [];
  for (const ip of service.clusterIps) {
    for (const p of service.ports) frontends.push({ ip, port: p.port, protocol: p.protocol, ...named(p.name) });
  }
  const seen = new Set<string>();
  const backends: RecordPort[] = [];
  for (const slice of slices) {
    for (const sp of service.ports) {
      const target = slice.ports.find((p) => p.name === sp.name && p.protocol === sp.protocol);
      if (!target) continue;
      for (const e of slice.endpoints) {
        if (!e.ready) continue;
        const id = `${e.ip}|${target.port}|${target.protocol}|${sp.name}`;
        if (seen.has(id)) continue;
        seen.add(id);
        backends.push({ ip: e.ip, port: target.port, protocol: target.protocol, ...named(sp.name) });
      }
    }
  }
  frontends.sort(portOrder);
  backends.sort(portOrder);
  return { key: keys.service(cluster, service.namespace, service.name), record: { cluster, namespace: service.namespace, name: service.name, frontends, backends } };
}

export function policyRecord(policy: PolicyManifest): { key: string; record: PolicyRecord } {
  const slash = policy.name.indexOf("/");
  const key = slash < 0 ? keys.policy(undefined, policy.name) : keys.policy(policy.name.slice(0, slash), policy.name.slice(slash + 1));
  return { key, record: { name: policy.name, document: slimPolicySource(policy.policy.source) } };
}
