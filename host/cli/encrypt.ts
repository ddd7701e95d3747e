/**
 * `membrane encrypt check <key-file>`: validates a key file and says what an
 * agent would apply (never a key byte); exit 2 on a bad file.
 * `membrane encrypt status`: the running agent's SAs (host/forwarder/esp-path.ts
 * writes them to <state dir>/encryption.json once a second).
 * `membrane encrypt flush`: removes a stopped agent's saved SA state and held keys.
 */
import { Command } from "commander";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { describeKey, parseKeyFile } from "../encrypt/key-file.js";
import { probeKernelEsp } from "../encrypt/xfrm.js";
import { encryptedMtu } from "../encrypt/mtu.js";
import { ESP_UDP_PORT } from "../encrypt/esp.js";
import { DEFAULT_STATE_DIR } from "../agent/status-file.js";
import { stateDirHeld } from "../agent/state-dir.js";
import { ESP_STATUS_FILE, espStatePath } from "../forwarder/esp-state-file.js";
import { heldKeysPath } from "../forwarder/esp-held-keys.js";
import type { EncryptionStatus } from "../forwarder/esp-path.js";
import { InvalidInputError, MembraneError } from "../errors.js";
import { encryptionStatusLines } from "../format/encryption.js";
import { toJson } from "../format/table.js";
import { example, integerArg, jsonOption, outputOf, refuseOtherVerbs } from "./command.js";

/** A status file older than this is from an agent that stopped or hangs. */
const STALE_MS = 5_000;

export function registerEncrypt(program: Command): void {
  const group = program.command("encrypt").description("transparent encryption between nodes (IPsec ESP): check a key file, show or flush the agent's SAs");
  refuseOtherVerbs(group, (got) => `encrypt: expected check, status or flush${got.length ? `, got "${got[0]}"` : ""}`);
  example(group, "membrane encrypt check /etc/membrane/keys", "membrane encrypt status --json");

  const check = group.command("check <key-file>")
    .description("validate a key file and say what the agent would apply; never prints a key (exit 2 on a bad file)")
    .option("--underlay-mtu <n>", "the MTU of the link between nodes, for the TUN MTU it implies", "1500");
  jsonOption(check, "the result as one JSON object");
  example(check, "membrane encrypt check /etc/membrane/keys", "membrane encrypt check keys --underlay-mtu 9000 --json");
  check.action((file: string, o: { underlayMtu: string; json: boolean }, self: Command) => {
    const io = outputOf(self);
    const underlay = integerArg("underlay-mtu", o.underlayMtu, 576, 65535)!;
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (err) {
      throw new InvalidInputError(`encrypt check: read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    const key = describeKey(parseKeyFile(text, file));
    // The probe needs a scratch network namespace: root only; otherwise say it was not tried.
    const kernel = process.getuid?.() === 0 ? (probeKernelEsp() ?? "kernel ESP available") : "not probed (needs root)";
    const mtu = encryptedMtu(underlay, key.icvBits);
    const result = { file, ok: true, ...key, path: kernel === "kernel ESP available" ? "kernel" : "userspace", kernel, udpPort: ESP_UDP_PORT, tunMtu: mtu };
    if (o.json) return io.out(toJson(result));
    io.out(`${file}: OK: key index (SPI) ${key.spi}, ${key.algorithm}, ${key.keyBits}-bit key + 32-bit salt, ICV ${key.icvBits} bits`);
    io.out(`would apply: install key ${key.spi} for every peer, then advertise it in the node record; the old key stays for the grace period`);
    io.out(`path: ${result.path} (ESP in UDP port ${ESP_UDP_PORT}); kernel: ${kernel}`);
    io.out(`TUN MTU and pod routes: ${mtu} (underlay ${underlay} - outer IPv4 20 - ESP-in-UDP ${underlay - 20 - mtu})`);
  });

  const status = group.command("status")
    .description("the running agent's encryption: keys, SPIs and sequence numbers per peer, replay drops, decrypt errors, the path in use")
    .option("--state-dir <dir>", `the agent's state directory (default ${DEFAULT_STATE_DIR})`);
  jsonOption(status, "the status as one JSON object");
  example(status, "membrane encrypt status", "membrane encrypt status --state-dir /run/membrane --json");
  status.action((o: { stateDir?: string; json: boolean }, self: Command) => {
    const io = outputOf(self);
    const dir = o.stateDir ?? DEFAULT_STATE_DIR;
    const s = readEncryptionStatus(dir);
    const age = Date.now() - s.updatedAt;
    const stale = age > STALE_MS;
    if (o.json) return io.out(toJson(stale ? { ...s, stale: true } : s));
    if (stale) io.err(`membrane encrypt status: warning: the report is ${Math.round(age / 1000)} s old (written every second): the agent (pid ${s.pid}) has stopped or hangs`);
    for (const line of encryptionStatusLines(s)) io.out(line);
  });

  const flush = group.command("flush")
    .description("remove a stopped agent's saved SA state (sequence reservations, replay windows) and held keys, so the next start begins fresh SAs with the key file's key only")
    .option("--state-dir <dir>", `the agent's state directory (default ${DEFAULT_STATE_DIR})`);
  example(flush, "membrane encrypt flush --state-dir /run/membrane");
  flush.action((o: { stateDir?: string }, self: Command) => {
    const dir = o.stateDir ?? DEFAULT_STATE_DIR;
    if (stateDirHeld(dir)) throw new MembraneError("RUNNING", `an agent holds ${dir}: stop it first (its SAs are in use)`);
    // The SA state, the held keys (key material: nothing of it may outlive a flush) and their locks.
    const saved = [espStatePath(dir), heldKeysPath(dir)];
    const had = saved.filter((p) => existsSync(p));
    for (const p of saved) {
      rmSync(p, { force: true });
      rmSync(`${p}.lock`, { force: true });
    }
    rmSync(join(dir, ESP_STATUS_FILE), { force: true });
    outputOf(self).out(had.length ? had.map((p) => `removed ${p}`).join("\n") : `no SA state or held keys in ${dir}`);
  });
}

function readEncryptionStatus(dir: string): EncryptionStatus {
  const path = join(dir, ESP_STATUS_FILE);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    throw new MembraneError("NOT_RUNNING", `no encryption status in ${dir}: no agent runs there with --encrypt-keys`);
  }
  try {
    return JSON.parse(text) as EncryptionStatus;
  } catch (err) {
    throw new MembraneError("BAD_STATUS", `${path}: ${(err as Error).message}`);
  }
}
