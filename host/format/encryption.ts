/** `membrane encrypt status` for people: the keys held, then one row per peer SA direction. */
import { renderTable } from "./table.js";
import type { EncryptionStatus } from "../forwarder/esp-path.js";

const hex = (spi: number) => `0x${spi.toString(16).padStart(8, "0")}`;

export function encryptionStatusLines(s: EncryptionStatus): string[] {
  const lines: string[] = [];
  lines.push(`path: ${s.path} (ESP in UDP on ${s.listen})${s.kernel ? `; kernel path not used: ${s.kernel}` : ""}`);
  if (s.crypto) lines.push(`crypto: ${s.crypto === "native" ? "native (libcrypto, per batch)" : "node:crypto (native/esp_gcm.c not built)"}`);
  lines.push(`key file ${s.keyFile}: current key index ${s.currentKey}; grace period ${s.graceSeconds} s`);
  if (s.keyFileError) lines.push(`key file NOT applied (the keys in use stay): ${s.keyFileError}`);
  if (s.peersFileError) lines.push(`peers file NOT applied: ${s.peersFileError}`);
  if (s.restoredKeys?.length) lines.push(`held from before the last restart: key ${s.restoredKeys.join(", ")}`);
  if (s.keyStateError) lines.push(`held keys NOT restored at start (started with the key file's key only): ${s.keyStateError}`);
  if (s.keyStateSaveError) lines.push(`held keys NOT saved (a restart within a grace period would lose the retired keys): ${s.keyStateSaveError}`);
  lines.push(renderTable([
    { header: "KEY", value: (k: EncryptionStatus["keys"][number]) => k.spi },
    { header: "STATE", value: (k) => (k.current ? "current" : `retired ${k.retiredSecondsAgo} s ago, removed in ${k.removedInSeconds} s`) },
    { header: "ALGORITHM", value: (k) => k.algorithm },
    { header: "ICV", value: (k) => k.icvBits },
    { header: "AGE(S)", value: (k) => k.ageSeconds },
  ], s.keys));
  const rows = s.peers.flatMap((p) => [
    ...p.out.map((o) => ({ peer: p.name, address: p.address, dir: "out", key: o.keyIndex, spi: hex(o.spi), seq: o.seq, note: `peer advertises ${p.advertisedKey}, sending under ${p.sendKey || "none"}` })),
    ...p.in.map((i) => ({ peer: p.name, address: p.address, dir: "in", key: i.keyIndex, spi: hex(i.spi), seq: i.highestSeq, note: `last packet ${i.idleSeconds} s ago` })),
    ...(p.out.length + p.in.length === 0 ? [{ peer: p.name, address: p.address, dir: "-", key: p.sendKey, spi: "-", seq: 0, note: `peer advertises ${p.advertisedKey}; no traffic yet` }] : []),
  ]);
  lines.push(renderTable([
    { header: "PEER", value: (r: (typeof rows)[number]) => r.peer },
    { header: "ADDRESS", value: (r) => r.address },
    { header: "DIR", value: (r) => r.dir },
    { header: "KEY", value: (r) => r.key },
    { header: "SPI", value: (r) => r.spi },
    { header: "SEQ", value: (r) => r.seq },
    { header: "", value: (r) => r.note, right: false },
  ], rows));
  const c = s.counters;
  const drops = Object.entries(c.drops).filter(([, n]) => n > 0).map(([why, n]) => `${why} ${n}`);
  lines.push(`packets: ${c.sealed} sealed, ${c.opened} opened, ${c.rekeys} rekeys before a sequence wrap, ${c.sendPushedBack} not sent (socket full); drops: ${drops.join(", ") || "none"}`);
  return lines;
}
