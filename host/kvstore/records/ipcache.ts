/** An ipcache entry (Cilium's ip/v1): prefix -> identity, the node hosting it, encryption key, owner pod. */
import { compact, integer, object, optionalIp, optionalText, prefix, type Mode } from "./fields.js";

export interface IpcacheRecord {
  /** "10.0.1.5/32": the mask is part of the prefix. */
  prefix: string;
  identity: number;
  hostIp?: string;
  encryptionKey: number;
  namespace?: string;
  podName?: string;
}

const FIELDS = ["prefix", "identity", "hostIp", "encryptionKey", "namespace", "podName"];

export function readIpcache(v: unknown, path: string, mode: Mode): IpcacheRecord {
  const o = object(v, path, mode, FIELDS);
  return compact({
    prefix: prefix(o.prefix, `${path}.prefix`),
    identity: integer(o.identity, `${path}.identity`, 1, 0xffffffff),
    hostIp: optionalIp(o.hostIp, `${path}.hostIp`),
    encryptionKey: integer(o.encryptionKey ?? 0, `${path}.encryptionKey`, 0, 15),
    namespace: optionalText(o.namespace, `${path}.namespace`),
    podName: optionalText(o.podName, `${path}.podName`),
  });
}
