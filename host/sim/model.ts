/**
 * The simulated cluster, derived from a few numbers so every part of the
 * simulator (the operator's writes, the agents, the churn, the checks) agrees
 * on names, addresses and identities without passing tables around.
 *
 * - node i: `sim-node-i`, InternalIP 172.16.0.0/12 + i + 1, pod CIDR 10.(64 + i/256).(i%256).0/24;
 * - pod p runs on node p % nodes at slot p / nodes of that node's /24, so
 *   at most MAX_PODS_PER_NODE pods per node (slots above are churn's);
 * - pod p has label set (p + slot) % labelSets: app, team, env and its namespace, so
 *   labelSets distinct identities are shared by all pods (id 1000 + set);
 * - service s: cluster IP 10.96.0.0/12 + s + 1, port 80, 3 backends (pods).
 */
import { InvalidInputError } from "../errors.js";
import { DEFAULT_CLUSTER, keys } from "../kvstore/keys.js";
import { encodeRecord } from "../kvstore/records/codec.js";
import type { PodManifest } from "../operator/manifests/kinds.js";
import { localPodRecord } from "../operator/convert.js";
import { podIdentityLabels } from "../operator/pod-identity.js";
import { masterValue } from "../kvstore/identities.js";

export const MAX_PODS_PER_NODE = 200;
/** Churn's pods take the slots above the steady ones. */
export const CHURN_SLOT_BASE = 200;
export const FIRST_SIM_IDENTITY = 1000;
export const SIM_NAMESPACES = 20;
export const BACKENDS_PER_SERVICE = 3;

export interface ClusterSize {
  nodes: number;
  pods: number;
  services: number;
  labelSets: number;
}

export function checkSize(size: ClusterSize): void {
  if (size.pods > size.nodes * MAX_PODS_PER_NODE) {
    throw new InvalidInputError(`--pods: at most ${MAX_PODS_PER_NODE} pods per node (${size.nodes} nodes hold ${size.nodes * MAX_PODS_PER_NODE}), got ${size.pods}`);
  }
  if (size.nodes > 60_000) throw new InvalidInputError(`--nodes: at most 60000 (pod CIDRs are /24s of 10.64.0.0/10), got ${size.nodes}`);
  if (size.labelSets + FIRST_SIM_IDENTITY > 60_000) throw new InvalidInputError(`--label-sets: at most ${60_000 - FIRST_SIM_IDENTITY}, got ${size.labelSets}`);
}

/** The IPv4 address `n` after `base` (a 32-bit number). */
function addressAfter(base: number, n: number): string {
  const v = (base + n) >>> 0;
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

export const nodeName = (i: number) => `sim-node-${i}`;
export const nodeIp = (i: number) => addressAfter(((172 << 24) | (16 << 16)) >>> 0, i + 1);
export const podCidr = (i: number) => `10.${64 + (i >> 8)}.${i & 255}.0/24`;
export const podIpAt = (node: number, slot: number) => `10.${64 + (node >> 8)}.${node & 255}.${slot + 2}`;

export const podNode = (p: number, size: ClusterSize) => p % size.nodes;
export const podSlot = (p: number, size: ClusterSize) => Math.floor(p / size.nodes);
export const podIp = (p: number, size: ClusterSize) => podIpAt(podNode(p, size), podSlot(p, size));
/** Spread so one node's pods carry different label sets (a deployment's replicas land on different nodes). */
export const podLabelSet = (p: number, size: ClusterSize) => (p + podSlot(p, size)) % size.labelSets;
export const identityOf = (labelSet: number) => FIRST_SIM_IDENTITY + labelSet;
export const serviceIp = (s: number) => addressAfter((10 << 24) | (96 << 16), s + 1);

export function labelsOf(labelSet: number): { namespace: string; labels: Record<string, string> } {
  return {
    namespace: `ns-${labelSet % SIM_NAMESPACES}`,
    labels: { app: `app-${labelSet}`, team: `team-${labelSet % 50}`, env: ["prod", "staging", "dev"][labelSet % 3]! },
  };
}

/** One record to put: state key and encoded value. */
export interface Put {
  key: string;
  value: string;
}

export function nodePut(i: number): Put {
  const name = nodeName(i);
  return {
    key: keys.node(DEFAULT_CLUSTER, name),
    value: encodeRecord("node", { name, cluster: DEFAULT_CLUSTER, addresses: [{ type: "InternalIP", ip: nodeIp(i) }], ipv4AllocCidr: podCidr(i), encryptionKey: 0 }),
  };
}

export function identityPut(labelSet: number): Put {
  const { namespace, labels } = labelsOf(labelSet);
  return { key: keys.identityMaster(identityOf(labelSet)), value: masterValue(podIdentityLabels({ namespace, labels })) };
}

export interface SimPod {
  name: string;
  node: number;
  ip: string;
  labelSet: number;
}

export function steadyPod(p: number, size: ClusterSize): SimPod {
  return { name: `pod-${p}`, node: podNode(p, size), ip: podIp(p, size), labelSet: podLabelSet(p, size) };
}

export function podManifest(pod: SimPod): PodManifest {
  const { namespace, labels } = labelsOf(pod.labelSet);
  return { kind: "Pod", namespace, name: pod.name, nodeName: nodeName(pod.node), ips: [pod.ip], labels } as PodManifest;
}

/**
 * What the operator writes for a running pod: the pod record under its node (what that node's agent
 * reads for its local pods), then the ipcache and endpoint records every agent follows.
 */
export function podPuts(pod: SimPod): Put[] {
  const local = localPodRecord(podManifest(pod));
  const identity = identityOf(pod.labelSet);
  const { namespace } = labelsOf(pod.labelSet);
  return [
    { key: local.key, value: encodeRecord("pod", local.record) },
    { key: keys.ipcache(`${pod.ip}/32`), value: encodeRecord("ipcache", { prefix: `${pod.ip}/32`, identity, hostIp: nodeIp(pod.node), encryptionKey: 0, namespace, podName: pod.name }) },
    { key: keys.endpoint(DEFAULT_CLUSTER, namespace, pod.name), value: encodeRecord("endpoint", { cluster: DEFAULT_CLUSTER, namespace, name: pod.name, node: nodeName(pod.node), ipv4: pod.ip, identity }) },
  ];
}

export function podKeys(pod: SimPod): string[] {
  return podPuts(pod).map((p) => p.key);
}

export function servicePut(s: number, size: ClusterSize, backendCount = BACKENDS_PER_SERVICE): Put {
  const backends = [];
  for (let k = 0; k < backendCount; k++) backends.push({ ip: podIp((s * BACKENDS_PER_SERVICE + k) % size.pods, size), port: 8080, protocol: "TCP", name: "http" });
  const namespace = `ns-${s % SIM_NAMESPACES}`;
  return {
    key: keys.service(DEFAULT_CLUSTER, namespace, `svc-${s}`),
    value: encodeRecord("service", { cluster: DEFAULT_CLUSTER, namespace, name: `svc-${s}`, frontends: [{ ip: serviceIp(s), port: 80, protocol: "TCP", name: "http" }], backends }),
  };
}
