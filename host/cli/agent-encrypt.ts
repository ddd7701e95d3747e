/**
 * The agent's encryption options (`membrane agent --encrypt-keys FILE ...`),
 * checked before anything is set up: the key file parsed (a bad one stops
 * the start with its line and field), the peers file parsed, the kernel's
 * ESP probed (this project's kernels have none: the userspace path is used
 * and the start line says why, naming the missing config options).
 */
import { Option } from "commander";
import { readFileSync } from "node:fs";
import { parseKeyFile } from "../encrypt/key-file.js";
import { parsePeersFile } from "../encrypt/peers-file.js";
import { probeKernelEsp } from "../encrypt/xfrm.js";
import { encryptedMtu } from "../encrypt/mtu.js";
import { parseIp } from "../packet/address.js";
import { InvalidInputError } from "../errors.js";
import type { EspPathOptions } from "../forwarder/esp-path.js";
import { integerArg } from "./command.js";

export const ENCRYPT_AGENT_OPTIONS: Option[] = [
  new Option("--encrypt-keys <file>", "encrypt traffic to other nodes with the IPsec key in this file (Cilium's format; watched: a new SPI rotates)"),
  new Option("--encrypt-listen <addr>", "this node's underlay IPv4 address: ESP in UDP 4500 is received there (with --encrypt-keys)"),
  new Option("--encrypt-peers <file>", "static peers (JSON: name, address, cidrs, keyIndex), watched; without a kvstore"),
  new Option("--encrypt-grace <s>", "seconds an old key keeps decrypting after a rotation (default 300)"),
];

type Flags = Record<string, string | string[] | boolean | undefined>;
const str = (flags: Flags, key: string) => (typeof flags[key] === "string" ? (flags[key] as string) : undefined);

function read(file: string, flag: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (err) {
    throw new InvalidInputError(`${flag} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** The ESP path's options from the flags (undefined without --encrypt-keys), the MTU it implies when --mtu was not given, and its one queue. */
export function encryptFromFlags(flags: Flags, stateDir: string, mtu: number | undefined, offloads: boolean): { encrypt?: EspPathOptions; mtu?: number; queues?: number } {
  const keyFile = str(flags, "encryptKeys");
  if (keyFile === undefined) {
    for (const f of ["encryptListen", "encryptPeers", "encryptGrace"]) if (str(flags, f) !== undefined) throw new InvalidInputError(`--${f.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} needs --encrypt-keys`);
    return { mtu };
  }
  const key = parseKeyFile(read(keyFile, "--encrypt-keys"), keyFile);
  const listen = str(flags, "encryptListen");
  if (listen === undefined) throw new InvalidInputError("--encrypt-keys needs --encrypt-listen <this node's underlay IPv4 address>");
  try {
    if (parseIp(listen).family !== 4) throw new Error("the ESP path's outer header is IPv4");
  } catch (err) {
    throw new InvalidInputError(`--encrypt-listen: ${(err as Error).message}`);
  }
  if (offloads) throw new InvalidInputError("--encrypt-keys and --offloads: the encrypted path seals packet by packet; leave offloads off");
  const queues = str(flags, "queues");
  if (queues !== undefined && queues !== "1") throw new InvalidInputError(`--encrypt-keys and --queues ${queues}: the encrypted path runs on one TUN queue (leave --queues out)`);
  const peersFile = str(flags, "encryptPeers");
  if (peersFile !== undefined) parsePeersFile(read(peersFile, "--encrypt-peers"), peersFile);
  const graceSeconds = integerArg("encrypt-grace", str(flags, "encryptGrace"), 1, 86_400);
  return {
    encrypt: { keyFile, listen, stateDir, ...(peersFile ? { peersFile } : {}), ...(graceSeconds ? { graceSeconds } : {}), kernel: probeKernelEsp() },
    mtu: mtu ?? encryptedMtu(1500, key.icvBits),
    queues: 1,
  };
}
