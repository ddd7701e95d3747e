/**
 * The cluster agent's half of a rolling key update. The forwarder's ESP
 * path (a worker thread) owns the keys; the agent core hands it the peers,
 * and with them the key index each peer advertises (agent-core.ts
 * applyPeers), in the round that sees a node record change. This loop, once
 * a second, reads the forwarder's encryption status and, when its current
 * key differs from what this node advertises, advertises it in the node
 * record. The forwarder installs a new key for every peer before it reports
 * it as current, so a node never advertises a key it cannot decrypt
 * (REFERENCE.md's order).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ESP_STATUS_FILE } from "../forwarder/esp-state-file.js";

export interface EncryptionSyncOptions {
  stateDir: string;
  /** Puts the node record again with this key index. */
  advertise: (keyIndex: number) => Promise<void>;
  advertised: number;
  log: (line: string) => void;
}

export class EncryptionSync {
  private advertised: number;
  private busy = false;
  private timer?: NodeJS.Timeout;

  constructor(private readonly opts: EncryptionSyncOptions) {
    this.advertised = opts.advertised;
  }

  start(everyMs = 1000): void {
    this.timer = setInterval(() => void this.tick(), everyMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** One round: the advertisement, when the forwarder's key moved. */
  async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
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
