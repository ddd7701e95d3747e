/**
 * Encryption in the cluster agent, kept out of cluster-agent.ts: the ESP
 * path reads its peers from a file the agent writes from the node records
 * (an empty one before the first round), and EncryptionSync advertises the
 * forwarder's key in the node record once it is installed.
 */
import { existsSync, readFileSync } from "node:fs";
import { writeFileAtomic } from "../sys/atomic-file.js";
import { parseKeyFile } from "../encrypt/key-file.js";
import { InvalidInputError } from "../errors.js";
import type { EspPathOptions } from "../forwarder/esp-path.js";
import type { ClusterAgentCore } from "../cluster/agent-core.js";
import { EncryptionSync, CLUSTER_PEERS_FILE } from "./encryption-sync.js";
import { join } from "node:path";

export function prepareClusterEncryption(stateDir: string, encrypt: EspPathOptions | undefined): EspPathOptions | undefined {
  if (!encrypt) return undefined;
  if (encrypt.peersFile) throw new InvalidInputError("--encrypt-peers is for agents without a kvstore: in a cluster the node records give the peers");
  const peersFile = join(stateDir, CLUSTER_PEERS_FILE);
  if (!existsSync(peersFile)) writeFileAtomic(peersFile, JSON.stringify({ peers: [] }));
  return { ...encrypt, peersFile };
}

/** The key index the forwarder starts with (it validated the file before it started). */
export function keyIndexOf(encrypt: EspPathOptions): number {
  return parseKeyFile(readFileSync(encrypt.keyFile, "utf8"), encrypt.keyFile).spi;
}

export function startEncryptionSync(core: ClusterAgentCore, self: string, stateDir: string, advertised: number, log: (line: string) => void): EncryptionSync {
  const sync = new EncryptionSync({
    stateDir, self, log,
    nodes: () => core.nodes.records.values(),
    advertise: (k) => core.setEncryptionKey(k),
    advertised,
  });
  sync.start();
  return sync;
}
