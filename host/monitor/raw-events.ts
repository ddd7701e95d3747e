/** Events as a datapath source hands them over: struct monitor_event records back to back, and what was lost. */
export interface RawMonitorEvents {
  engine: "wasm" | "kernel";
  /** `count` records of MONITOR_EVENT.size bytes. */
  bytes: Uint8Array;
  count: number;
  /** Events the datapath could not deliver since the last drain (ring full, rate cap). */
  lost: number;
}
