/**
 * A Pod as the Kubernetes API serves it (managed fields, containers with
 * probes and resources, volumes, conditions, statuses): what every agent
 * would receive per pod change without slim records. Only used to measure
 * that mechanism off.
 */
import { labelsOf, nodeName, type SimPod } from "./model.js";

export function fullPodObject(pod: SimPod, generation: number): Record<string, unknown> {
  const { namespace, labels } = labelsOf(pod.labelSet);
  const container = (name: string, port: number) => ({
    name, image: `registry.example/${name}:1.${generation % 10}`, imagePullPolicy: "IfNotPresent",
    ports: [{ name: "http", containerPort: port, protocol: "TCP" }],
    env: [{ name: "LOG_LEVEL", value: "info" }, { name: "POD_NAME", valueFrom: { fieldRef: { apiVersion: "v1", fieldPath: "metadata.name" } } }],
    resources: { limits: { cpu: "500m", memory: "256Mi" }, requests: { cpu: "100m", memory: "128Mi" } },
    livenessProbe: { httpGet: { path: "/healthz", port, scheme: "HTTP" }, initialDelaySeconds: 10, periodSeconds: 10, timeoutSeconds: 1, failureThreshold: 3 },
    readinessProbe: { httpGet: { path: "/ready", port, scheme: "HTTP" }, periodSeconds: 5, timeoutSeconds: 1, failureThreshold: 3 },
    volumeMounts: [{ name: "config", mountPath: "/etc/app" }, { name: "kube-api-access", readOnly: true, mountPath: "/var/run/secrets/kubernetes.io/serviceaccount" }],
    terminationMessagePath: "/dev/termination-log", terminationMessagePolicy: "File",
  });
  const status = (name: string) => ({
    name, ready: true, restartCount: 0, started: true, image: `registry.example/${name}:1.${generation % 10}`,
    state: { running: { startedAt: "2026-12-05T06:00:00Z" } },
    imageID: `registry.example/${name}@sha256:9b2a4c1f0e6d8a7b3c5e2f1a0d9c8b7a6e5f4d3c2b1a0f9e8d7c6b5a4f3e2d1c`,
    containerID: "containerd://4be1c2a9f0d8e7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2",
  });
  const condition = (type: string) => ({ type, status: "True", lastProbeTime: null, lastTransitionTime: "2026-12-05T06:00:05Z" });
  return {
    apiVersion: "v1", kind: "Pod",
    metadata: {
      name: pod.name, namespace, uid: `5f0c${generation.toString(16).padStart(4, "0")}-8e4b-4d2a-9c61-0b5e7f2d8a13`, resourceVersion: String(100000 + generation),
      creationTimestamp: "2026-12-05T06:00:00Z", labels: { ...labels, "pod-template-hash": "5d9c7b8f6" },
      annotations: { "prometheus.io/scrape": "true", "prometheus.io/port": "9090" },
      ownerReferences: [{ apiVersion: "apps/v1", kind: "ReplicaSet", name: `${labels.app}-5d9c7b8f6`, uid: "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d", controller: true, blockOwnerDeletion: true }],
      managedFields: [
        { manager: "kube-controller-manager", operation: "Update", apiVersion: "v1", time: "2026-12-05T06:00:00Z", fieldsType: "FieldsV1", fieldsV1: { "f:metadata": { "f:labels": { ".": {}, "f:app": {} }, "f:ownerReferences": {} }, "f:spec": { "f:containers": {} } } },
        { manager: "kubelet", operation: "Update", apiVersion: "v1", time: "2026-12-05T06:00:05Z", fieldsType: "FieldsV1", subresource: "status", fieldsV1: { "f:status": { "f:conditions": {}, "f:containerStatuses": {}, "f:podIP": {}, "f:podIPs": {} } } },
      ],
    },
    spec: {
      containers: [container("app", 8080), container("sidecar", 9090)],
      volumes: [{ name: "config", configMap: { name: `${labels.app}-config`, defaultMode: 420 } }, { name: "kube-api-access", projected: { defaultMode: 420, sources: [{ serviceAccountToken: { expirationSeconds: 3607, path: "token" } }, { configMap: { name: "kube-root-ca.crt", items: [{ key: "ca.crt", path: "ca.crt" }] } }] } }],
      restartPolicy: "Always", terminationGracePeriodSeconds: 30, dnsPolicy: "ClusterFirst", serviceAccountName: "default", nodeName: nodeName(pod.node),
      securityContext: {}, schedulerName: "default-scheduler", priority: 0, enableServiceLinks: true, preemptionPolicy: "PreemptLowerPriority",
      tolerations: [{ key: "node.kubernetes.io/not-ready", operator: "Exists", effect: "NoExecute", tolerationSeconds: 300 }, { key: "node.kubernetes.io/unreachable", operator: "Exists", effect: "NoExecute", tolerationSeconds: 300 }],
    },
    status: {
      phase: "Running", conditions: ["Initialized", "Ready", "ContainersReady", "PodScheduled"].map(condition),
      hostIP: "172.16.0.1", podIP: pod.ip, podIPs: [{ ip: pod.ip }], startTime: "2026-12-05T06:00:00Z",
      containerStatuses: [status("app"), status("sidecar")], qosClass: "Burstable",
    },
  };
}

/** Objects, arrays and strings a JSON.parse of `text` creates: the allocations of one decode. */
export function parseAllocations(text: string): number {
  let n = 0;
  JSON.parse(text, (_k, v) => {
    if (typeof v === "object" || typeof v === "string") n++;
    return v;
  });
  return n;
}
