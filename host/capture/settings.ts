/**
 * What `membrane capture` asks the forwarder for: packets before the
 * datapath (as read from the device), after it (as the datapath left them,
 * dropped ones included with their reason), or both; only those with an
 * address (or within a CIDR) and a port on either side when given; at most
 * `ratePerSecond` packets (the rest are counted as missed), each cut to
 * `snaplen` bytes.
 */
import { InvalidInputError } from "../errors.js";

export const CAPTURE_STAGES = ["before", "after"] as const;
export type CaptureStage = (typeof CAPTURE_STAGES)[number];

export interface CaptureSettings {
  stages: readonly CaptureStage[];
  address?: string;
  port?: number;
  ratePerSecond: number;
  snaplen: number;
}

export function checkCaptureSettings(s: { stages?: readonly string[]; address?: string; port?: number; ratePerSecond?: number; snaplen?: number }, what = "capture"): CaptureSettings {
  const stages = s.stages?.length ? s.stages : CAPTURE_STAGES;
  for (const st of stages) if (!(CAPTURE_STAGES as readonly string[]).includes(st)) throw new InvalidInputError(`${what}: stage ${JSON.stringify(st)} is not one of ${CAPTURE_STAGES.join(", ")}`);
  const rate = s.ratePerSecond ?? 10_000;
  if (!Number.isInteger(rate) || rate < 1 || rate > 1_000_000) throw new InvalidInputError(`${what}: rate must be 1..1000000 packets per second, got ${rate}`);
  const snaplen = s.snaplen ?? 262144;
  if (!Number.isInteger(snaplen) || snaplen < 20 || snaplen > 262144) throw new InvalidInputError(`${what}: snaplen must be 20..262144 bytes, got ${snaplen}`);
  if (s.port !== undefined && (!Number.isInteger(s.port) || s.port < 0 || s.port > 65535)) throw new InvalidInputError(`${what}: port must be 0..65535, got ${s.port}`);
  return { stages: [...new Set(stages as CaptureStage[])], address: s.address, port: s.port, ratePerSecond: rate, snaplen };
}

/** A captured packet as it crosses threads and the API. */
export interface CapturedPacket {
  stage: CaptureStage;
  /** Wall clock, ns since the epoch, as a decimal string (JSON has no bigint). */
  timeNs: string;
  /** "ip" (TUN) or "ethernet". */
  link: "ip" | "ethernet";
  /** The bytes kept (at most snaplen). */
  data: Uint8Array;
  /** The packet's length. */
  length: number;
  /** After the datapath: "pass" or "drop", and the drop reason's name. */
  verdict?: "pass" | "drop";
  reason?: string;
}
