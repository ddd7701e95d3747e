/**
 * `membrane demo --metrics <addr:port>` in cluster mode: each node's agent
 * serves its metrics on 127.0.0.1:<AGENT_METRICS_PORT> in its own namespace,
 * out of the host's reach. The demo brings node i's endpoint to the host at
 * <addr>:<port + i> (n1 on the port given, n2 on the next): ns-bridge.js
 * --expose in the node's namespace listens on a unix socket (0600, in the
 * demo's temporary dir) piped to the agent's port, and the demo listens on
 * the host address, piping each connection to that socket.
 */
import net from "node:net";
import { join } from "node:path";
import { packageRoot } from "../../package-root.js";
import { InvalidInputError } from "../../errors.js";
import type { ListenAddress } from "../../metrics/server.js";
import type { NetnsLab } from "../../sys/netns/lab.js";
import { pipeBothWays } from "./pipe.js";

/** Where every agent listens inside its node's namespace (each has its own loopback). */
export const AGENT_METRICS_PORT = 9962;

/** Node i's address on the host; refused before anything starts when the ports run past 65535. */
export function nodeMetricsAddresses(base: ListenAddress, nodes: string[]): { node: string; address: ListenAddress }[] {
  if (base.port + nodes.length - 1 > 65535) throw new InvalidInputError(`--metrics: the cluster demo uses ports ${base.port}..${base.port + nodes.length - 1} (one per node), past 65535`);
  return nodes.map((node, i) => ({ node, address: { host: base.host, port: base.port + i } }));
}

export const showAddress = (a: ListenAddress) => `${a.host.includes(":") ? `[${a.host}]` : a.host}:${a.port}`;

export class MetricsBridge {
  readonly #servers: net.Server[] = [];
  readonly #sockets = new Set<net.Socket>();

  /** Exposes each node's agent metrics on its host address; resolves once both ends listen. */
  async expose(lab: NetnsLab, dir: string, nodes: { node: string; ns: string; address: ListenAddress }[]): Promise<void> {
    for (const n of nodes) {
      const path = join(dir, `metrics-${n.node}.sock`);
      const p = lab.spawn(n.ns, [process.execPath, join(packageRoot(), "dist/host/demo/cluster/ns-bridge.js"), "--expose", path, String(AGENT_METRICS_PORT)], { label: `${n.ns}: metrics bridge` });
      await p.ready(8_000);
      const server = net.createServer((client) => {
        const up = net.connect(path);
        for (const s of [client, up]) this.#sockets.add(s);
        pipeBothWays(client, up, () => {
          this.#sockets.delete(client);
          this.#sockets.delete(up);
        });
      });
      await new Promise<void>((resolve, reject) => server.once("error", reject).listen(n.address.port, n.address.host, () => resolve()));
      this.#servers.push(server);
    }
  }

  /** Closes the host listeners and every bridged connection (the namespace ends die with the lab). */
  close(): void {
    for (const s of this.#servers) s.close();
    for (const s of this.#sockets) s.destroy();
    this.#sockets.clear();
  }
}
