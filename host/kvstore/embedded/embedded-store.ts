import { NotSupportedError } from "../../errors.js";
import type { KvStore } from "../store.js";
import type { EmbeddedOptions } from "../options.js";

export async function openEmbeddedKvStore(path: string, _options: EmbeddedOptions = {}): Promise<KvStore> {
  throw new NotSupportedError(`embedded kvstore at ${path}: not implemented yet`);
}
