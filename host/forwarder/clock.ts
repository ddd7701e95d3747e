/**
 * The forwarder's datapath clock: seconds of CLOCK_MONOTONIC (what Node's
 * hrtime reads on Linux, and what the kernel datapath's bpf_ktime_get_ns
 * reads). It keeps running across a forwarder restart, so the lifetimes in a
 * restored conntrack snapshot stay meaningful; it restarts at boot, and so do
 * the connections.
 */
export function monotonicSeconds(): number {
  return Number(process.hrtime.bigint() / 1_000_000_000n);
}
