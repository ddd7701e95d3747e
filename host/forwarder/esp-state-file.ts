/**
 * The ESP path's SA state on disk (`<state dir>/esp-sa.json`): outbound
 * sequence-number reservations and inbound replay windows per peer
 * (TunnelSnapshot: no key material), so a restarted forwarder resumes its
 * SAs as it resumes conntrack. Written atomically under a lock, so two
 * forwarders pointed at one state dir cannot interleave; a file that cannot
 * be read is refused whole with its path and the reason, never half used.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "../sys/atomic-file.js";
import { withFileLock } from "../sys/file-lock.js";
import { InvalidInputError } from "../errors.js";
import type { TunnelSnapshot } from "../encrypt/tunnel.js";

export const ESP_STATE_FILE = "esp-sa.json";
export const ESP_STATUS_FILE = "encryption.json";

export function espStatePath(stateDir: string): string {
  return join(stateDir, ESP_STATE_FILE);
}

export function saveEspState(stateDir: string, snapshot: TunnelSnapshot): void {
  const path = espStatePath(stateDir);
  withFileLock(`${path}.lock`, () => writeFileAtomic(path, JSON.stringify(snapshot)), { what: "ESP SA state" });
}

export function loadEspState(stateDir: string): TunnelSnapshot | undefined {
  const path = espStatePath(stateDir);
  if (!existsSync(path)) return undefined;
  return withFileLock(`${path}.lock`, () => {
    let doc: TunnelSnapshot;
    try {
      doc = JSON.parse(readFileSync(path, "utf8")) as TunnelSnapshot;
    } catch (err) {
      throw new InvalidInputError(`ESP SA state ${path}: ${(err as Error).message}`);
    }
    if (doc?.version !== 1 || typeof doc.peers !== "object" || doc.peers === null) {
      throw new InvalidInputError(`ESP SA state ${path}: version: expected 1 with a "peers" object`);
    }
    for (const [name, p] of Object.entries(doc.peers)) {
      for (const [k, o] of Object.entries(p.out ?? {})) {
        if (!Number.isSafeInteger(o?.reserved) || !Number.isSafeInteger(o?.generation) || o.reserved < 0 || o.generation < 0) {
          throw new InvalidInputError(`ESP SA state ${path}: peers.${name}.out.${k}: expected non-negative integers "generation" and "reserved"`);
        }
      }
    }
    return doc;
  }, { what: "ESP SA state" });
}
