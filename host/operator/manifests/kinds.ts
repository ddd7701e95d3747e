/**
 * The Kubernetes objects membrane takes as desired state, reduced on reading
 * to the fields membrane uses. What is dropped here (annotations, status
 * conditions, managed fields) can never make the operator write a record:
 * a record changes only when one of these fields does.
 */
import type { PolicyDocument } from "../../policy/document.js";

export type Labels = Record<string, string>;

export interface NodeManifest {
  kind: "Node";
  name: string;
  labels: Labels;
  /** status.addresses of type InternalIP (ExternalIP when there is none), per family. */
  addresses: { ipv4?: string; ipv6?: string };
  /** spec.podCIDRs (or spec.podCIDR), canonical text. */
  podCidrs: string[];
}

export interface PodManifest {
  kind: "Pod";
  namespace: string;
  name: string;
  labels: Labels;
  nodeName: string;
  /** status.podIPs (or status.podIP): at most one per family. */
  ips: string[];
}

export type Protocol = "TCP" | "UDP";

export interface ServicePort {
  name: string;
  port: number;
  protocol: Protocol;
}

export interface ServiceManifest {
  kind: "Service";
  namespace: string;
  name: string;
  /** spec.clusterIPs (or spec.clusterIP); empty for a headless service. */
  clusterIps: string[];
  ports: ServicePort[];
}

export interface EndpointPort {
  name: string;
  port: number;
  protocol: Protocol;
}

export interface EndpointAddress {
  ip: string;
  nodeName?: string;
  /** EndpointSlice conditions.ready (absent means ready, as Kubernetes reads it). */
  ready: boolean;
}

/** An EndpointSlice, or the one slice an Endpoints object amounts to. */
export interface EndpointsManifest {
  kind: "EndpointSlice" | "Endpoints";
  namespace: string;
  name: string;
  /** The service the endpoints belong to (label kubernetes.io/service-name, or the Endpoints' own name). */
  serviceName: string;
  endpoints: EndpointAddress[];
  ports: EndpointPort[];
}

export interface PolicyManifest {
  kind: "NetworkPolicy" | "CiliumNetworkPolicy" | "CiliumClusterwideNetworkPolicy";
  /** "namespace/name" or, cluster-wide, "name". */
  name: string;
  policy: PolicyDocument;
}

export type Manifest = NodeManifest | PodManifest | ServiceManifest | EndpointsManifest | PolicyManifest;

/** "Pod default/web", "Node n1": how messages and listings name an object. */
export function manifestId(m: Manifest): string {
  switch (m.kind) {
    case "Node":
      return `Node ${m.name}`;
    case "NetworkPolicy":
    case "CiliumNetworkPolicy":
    case "CiliumClusterwideNetworkPolicy":
      return `${m.kind} ${m.name}`;
    default:
      return `${m.kind} ${m.namespace}/${m.name}`;
  }
}
