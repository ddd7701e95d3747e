/**
 * Encryption in the cluster agent, kept out of cluster-agent.ts: the agent
 * core hands the ESP path its peers over the forwarder's command channel in
 * the round that routes into the TUN (before those routes); the set it last
 * handed over is kept in the state dir, so a restarted forwarder starts with
 * it. EncryptionSync advertises the forwarder's key in the node record once
 * it is installed.
 */
import { readFileSync } from "node:fs";
import { parseKeyFile } from "../encrypt/key-file.js";
import { InvalidInputError } from "../errors.js";
import type { EspPathOptions } from "../forwarder/esp-path.js";
import type { ClusterAgentCore } from "../cluster/agent-core.js";
import { EncryptionSync } from "./encryption-sync.js";
import { join } from "node:path";

const CLUSTER_PEERS_FILE = "encrypt-peers.json";

export function prepareClusterEncryption(stateDir: string, encrypt: EspPathOptions | undefined): EspPathOptions | undefined {
  if (!encrypt) return undefined;
  if (encrypt.peersFile) throw new InvalidInputError("--encrypt-peers is for agents without a kvstore: in a cluster the node records give the peers");
  return { ...encrypt, peersSeedFile: clusterPeersFile(stateDir) };
}

/** The peers the forwarder last took (ForwarderSink writes it; `membrane encrypt status` shows what the ESP path holds). */
export function clusterPeersFile(stateDir: string): string {
  return join(stateDir, CLUSTER_PEERS_FILE);
}

/** The key index the forwarder starts with (it validated the file before it started). */
export function keyIndexOf(encrypt: EspPathOptions): number {
  return parseKeyFile(readFileSync(encrypt.keyFile, "utf8"), encrypt.keyFile).spi;
}

export function startEncryptionSync(core: ClusterAgentCore, stateDir: string, advertised: number, log: (line: string) => void): EncryptionSync {
  const sync = new EncryptionSync({
    stateDir, log,
    advertise: (k) => core.setEncryptionKey(k),
    advertised,
  });
  sync.start();
  return sync;
}
