/**
 * One node's forwarder, optionally with userspace ESP, as a process of its
 * own inside the node's network namespace (the TUN and the UDP socket must
 * be made there): `ip netns exec <ns> node dist/host/demo/esp-node.js JSON`
 * with JSON an EspNodeConfig. It probes the kernel's ESP first (the path in
 * use goes into the status file), starts the forwarder, routes table
 * `table` into the TUN, prints {"ready":true,...}, then a report line every
 * 200 ms. SIGTERM stops the forwarder (SA state saved) and exits 0.
 */
import { execFileSync } from "node:child_process";
import { ForwarderHandle } from "../forwarder/controller.js";
import { probeKernelEsp } from "../encrypt/xfrm.js";
import type { EspPathOptions } from "../forwarder/esp-path.js";

export interface EspNodeConfig {
  tun: string;
  mtu: number;
  /** Routing table whose default route is the TUN (the node's ip rules send pod traffic there). */
  table: number;
  encrypt?: EspPathOptions;
}

const print = (o: unknown) => process.stdout.write(JSON.stringify(o) + "\n");

async function main(): Promise<void> {
  const cfg = JSON.parse(process.argv[2] ?? "{}") as EspNodeConfig;
  const encrypt = cfg.encrypt ? { ...cfg.encrypt, kernel: probeKernelEsp() } : undefined;
  const handle = await ForwarderHandle.start({
    device: { name: cfg.tun, mtu: cfg.mtu },
    encrypt,
    reportEveryMs: 200,
    onReport: (r) => print({ report: true, packetsIn: r.stats.packetsIn, packetsOut: r.stats.packetsOut, dropped: r.stats.dropped }),
  });
  execFileSync("ip", ["route", "replace", "default", "dev", handle.ready.device, "table", String(cfg.table)]);
  print({ ready: true, device: handle.ready.device, mtu: handle.ready.mtu, kernel: encrypt?.kernel ?? null });
  let stopping = false;
  process.on("SIGTERM", () => {
    if (stopping) return;
    stopping = true;
    void handle.stop().then((stopped) => {
      print({ stopped: true, packetsIn: stopped.stats.packetsIn });
      process.exit(0);
    });
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`esp-node: ${(err as Error).message}\n`);
  process.exit(1);
});
