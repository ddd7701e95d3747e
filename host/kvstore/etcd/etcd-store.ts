import { NotSupportedError } from "../../errors.js";
import type { KvStore } from "../store.js";
import type { EtcdOptions } from "../options.js";

export async function openEtcdKvStore(endpoints: string[], _options: EtcdOptions = {}): Promise<KvStore> {
  throw new NotSupportedError(`etcd kvstore at ${endpoints.join(",")}: not implemented yet`);
}
