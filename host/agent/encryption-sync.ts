/**
 * The cluster agent's half of a rolling key update. The forwarder's ESP
 * path (a worker thread) owns the keys and reads its peers from a file in
 * the state dir; this loop, once a second:
 *
 * - writes that peers file from the node records (peersFromNodes), so a
 *   peer's newly advertised key index reaches the sender's key choice;
 * - reads the forwarder's encryption status and, when its current key
 *   differs from what this node advertises, advertises it in the node
 *   record. The forwarder installs a new key for every peer before it
 *   reports it as current, so a node never advertises a key it cannot
 *   decrypt (REFERENCE.md's order).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "../sys/atomic-file.js";
import { peersFromNodes } from "../cluster/encryption-peers.js";
import type { NodeRecord } from "../kvstore/records/node.js";
import { ESP_STATUS_FILE } from "../forwarder/esp-state-file.js";

export const CLUSTER_PEERS_FILE = "encrypt-peers.json";

export interface EncryptionSyncOptions {
  stateDir: string;
  self: string;
  nodes: () => Iterable<NodeRecord>;
  /** Puts the node record again with this key index. */
  advertise: (keyIndex: number) => Promise<void>;
  advertised: number;
  log: (line: string) => void;
}

export class EncryptionSync {
  private lastPeers = "";
  private advertised: number;
  private busy = false;
  private timer?: NodeJS.Timeout;

  constructor(private readonly opts: EncryptionSyncOptions) {
    this.advertised = opts.advertised;
  }

  get peersFile(): string {
    return join(this.opts.stateDir, CLUSTER_PEERS_FILE);
  }

  start(everyMs = 1000): void {
    this.timer = setInterval(() => void this.tick(), everyMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** One round: the peers file, then the advertisement. */
  async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const peers = JSON.stringify({ peers: peersFromNodes(this.opts.self, this.opts.nodes()) });
      if (peers !== this.lastPeers) {
        writeFileAtomic(this.peersFile, peers);
        this.lastPeers = peers;
      }
      const current = this.forwarderKey();
      if (current !== undefined && current !== this.advertised) {
        await this.opts.advertise(current);
        this.opts.log(`encryption: key ${current} installed for every peer; node record now advertises it (was ${this.advertised})`);
        this.advertised = current;
      }
    } catch (err) {
      this.opts.log(`encryption: ${(err as Error).message}; trying again in a second`);
    } finally {
      this.busy = false;
    }
  }

  private forwarderKey(): number | undefined {
    try {
      return (JSON.parse(readFileSync(join(this.opts.stateDir, ESP_STATUS_FILE), "utf8")) as { currentKey?: number }).currentKey;
    } catch {
      return undefined; // not written yet
    }
  }
}
