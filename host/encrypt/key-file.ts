/**
 * Cilium's IPsec key file: one line, `SPI ALGORITHM KEY ICV-BITS`, e.g.
 *   3 rfc4106(gcm(aes)) 0x<32 hex digits of key><8 hex digits of salt> 128
 * SPI 1..15 (it travels in 4 bits of the packet mark), AES-GCM (RFC 4106)
 * with a 128-bit key and a 32-bit salt, ICV 96, 128 or 256 bits... of which
 * RFC 4106 defines 64, 96 and 128: 256 is accepted by Cilium's parser but is
 * not a GCM tag length, so membrane refuses it with that reason.
 *
 * Key material never appears in an error, a log line, status or metrics: the
 * messages below name the line and the field and describe what is wrong
 * (length, characters), never the value.
 */
import { InvalidInputError } from "../errors.js";

export const AEAD_ALGORITHM = "rfc4106(gcm(aes))";
/** RFC 4106: a 16-byte AES-128 key followed by a 4-byte salt. */
export const KEY_BYTES = 16;
export const SALT_BYTES = 4;
export const ICV_BITS = [64, 96, 128] as const;
export type IcvBits = (typeof ICV_BITS)[number];

export interface IpsecKey {
  /** 1..15 */
  spi: number;
  algorithm: typeof AEAD_ALGORITHM;
  key: Buffer;
  salt: Buffer;
  icvBits: IcvBits;
}

/** What may be shown of a key: everything but its bytes. */
export function describeKey(k: IpsecKey): { spi: number; algorithm: string; keyBits: number; icvBits: number } {
  return { spi: k.spi, algorithm: k.algorithm, keyBits: k.key.length * 8, icvBits: k.icvBits };
}

/** Parses the file's text; `file` names it in messages. Comment lines (#) and blank lines are skipped. */
export function parseKeyFile(text: string, file: string): IpsecKey {
  const lines = text
    .split("\n")
    .map((line, i) => ({ line: line.trim(), number: i + 1 }))
    .filter((l) => l.line !== "" && !l.line.startsWith("#"));
  if (lines.length === 0) throw new InvalidInputError(`${file}: no key (expected a line "SPI ${AEAD_ALGORITHM} KEY ICV-BITS")`);
  if (lines.length > 1) throw new InvalidInputError(`${file}:${lines[1]!.number}: one key per file (a new SPI in the file starts a rotation)`);
  const { line, number } = lines[0]!;
  const at = (field: string) => `${file}:${number}: ${field}`;
  const fields = line.split(/\s+/);

  // The older form: [SPI] AUTH-ALGO AUTH-KEY ENC-ALGO ENC-KEY (e.g. hmac(sha256) ... cbc(aes) ...).
  if (fields.some((f) => /^(hmac|cbc|digest_null|cipher_null)\(/.test(f))) {
    throw new InvalidInputError(
      `${at("algorithm")}: the "[SPI] AUTH-ALGO AUTH-KEY ENC-ALGO ENC-KEY" form (HMAC + CBC) is not supported; use "SPI ${AEAD_ALGORITHM} KEY ICV-BITS"`,
    );
  }
  if (fields.length !== 4) throw new InvalidInputError(`${at("line")}: expected 4 fields "SPI ${AEAD_ALGORITHM} KEY ICV-BITS", got ${fields.length}`);
  const [spiText, algorithm, keyText, icvText] = fields as [string, string, string, string];

  if (!/^\d+$/.test(spiText)) throw new InvalidInputError(`${at("SPI")}: expected a number 1..15, got ${JSON.stringify(spiText.slice(0, 12))}`);
  const spi = Number(spiText);
  if (spi < 1 || spi > 15) throw new InvalidInputError(`${at("SPI")}: must be 1..15 (it travels in 4 bits of the packet mark), got ${spi}`);

  if (algorithm !== AEAD_ALGORITHM) {
    throw new InvalidInputError(`${at("algorithm")}: only ${AEAD_ALGORITHM} (AES-GCM-128, RFC 4106) is supported, got ${JSON.stringify(algorithm.slice(0, 40))}`);
  }

  const hex = keyText.startsWith("0x") || keyText.startsWith("0X") ? keyText.slice(2) : keyText;
  if (!/^[0-9a-fA-F]*$/.test(hex)) throw new InvalidInputError(`${at("key")}: not hexadecimal (the value is not shown)`);
  const want = (KEY_BYTES + SALT_BYTES) * 2;
  if (hex.length !== want) {
    throw new InvalidInputError(
      `${at("key")}: expected ${want} hex digits (a ${KEY_BYTES}-byte key then a ${SALT_BYTES}-byte salt), got ${hex.length} (the value is not shown)`,
    );
  }
  const bytes = Buffer.from(hex, "hex");

  if (!/^\d+$/.test(icvText)) throw new InvalidInputError(`${at("ICV-BITS")}: expected ${ICV_BITS.join(", ")}, got ${JSON.stringify(icvText.slice(0, 12))}`);
  const icv = Number(icvText);
  if (icv === 256) throw new InvalidInputError(`${at("ICV-BITS")}: 256 is not an AES-GCM tag length (RFC 4106 allows ${ICV_BITS.join(", ")})`);
  if (!(ICV_BITS as readonly number[]).includes(icv)) throw new InvalidInputError(`${at("ICV-BITS")}: expected ${ICV_BITS.join(", ")}, got ${icv}`);

  return { spi, algorithm: AEAD_ALGORITHM, key: bytes.subarray(0, KEY_BYTES), salt: bytes.subarray(KEY_BYTES), icvBits: icv as IcvBits };
}
