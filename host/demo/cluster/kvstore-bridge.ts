/**
 * `membrane demo --kvstore etcd:<host:port,...>`: the agents and the operator
 * run in namespaces of their own, where the host's loopback (where etcd
 * usually listens) does not exist. For each etcd endpoint the demo listens on
 * a unix socket (0600, in its temporary dir) piped to that endpoint, and
 * starts ns-bridge.js in each namespace that needs the store, listening on the
 * namespace's 127.0.0.1:<23790 + i>. The processes get the spec rewritten to
 * those local ports. An embedded store is a path: nothing to bridge.
 */
import net from "node:net";
import { chmodSync } from "node:fs";
import { join } from "node:path";
import { packageRoot } from "../../package-root.js";
import { parseKvStoreSpec } from "../../kvstore/open.js";
import type { NetnsLab } from "../../sys/netns/lab.js";
import { pipeBothWays } from "./pipe.js";

const FIRST_PORT = 23790;

export class KvstoreBridge {
  readonly #servers: net.Server[] = [];
  readonly #sockets = new Set<net.Socket>();
  /** The spec the processes in the namespaces use. */
  readonly spec: string;
  readonly #paths: string[] = [];

  private constructor(readonly original: string, endpoints: string[] | undefined, dir: string) {
    if (!endpoints) {
      this.spec = original;
      return;
    }
    this.spec = `etcd:${endpoints.map((_, i) => `127.0.0.1:${FIRST_PORT + i}`).join(",")}`;
    endpoints.forEach((e, i) => this.#paths.push(join(dir, `etcd-${i}.sock`)));
  }

  /** Opens the unix sockets (etcd specs only). */
  static async open(spec: string, dir: string): Promise<KvstoreBridge> {
    const parsed = parseKvStoreSpec(spec);
    const endpoints = parsed.backend === "etcd" ? parsed.endpoints.map((e) => e.replace(/^https?:\/\//, "")) : undefined;
    if (endpoints?.some((e) => spec.includes(`https://${e}`))) throw new Error("the demo's kvstore bridge carries plain etcd (http) only");
    const b = new KvstoreBridge(spec, endpoints, dir);
    for (const [i, path] of b.#paths.entries()) {
      const [host, port] = splitHostPort(endpoints![i]!);
      const server = net.createServer((client) => {
        const up = net.connect(port, host);
        for (const s of [client, up]) b.#sockets.add(s);
        pipeBothWays(client, up, () => {
          b.#sockets.delete(client);
          b.#sockets.delete(up);
        });
      });
      await new Promise<void>((resolve, reject) => server.once("error", reject).listen(path, () => resolve()));
      chmodSync(path, 0o600);
      b.#servers.push(server);
    }
    return b;
  }

  /** Starts the namespace end in `ns` (nothing for an embedded store); resolves once it listens. */
  async attach(lab: NetnsLab, ns: string): Promise<void> {
    await Promise.all(this.#paths.map(async (path, i) => {
      const p = lab.spawn(ns, [process.execPath, join(packageRoot(), "dist/host/demo/cluster/ns-bridge.js"), String(FIRST_PORT + i), path], { label: `${ns}: kvstore bridge` });
      await p.ready(8_000);
    }));
  }

  /** Closes the sockets and every bridged connection (the namespace ends die with the lab). */
  close(): void {
    for (const s of this.#servers) s.close();
    for (const s of this.#sockets) s.destroy();
    this.#sockets.clear();
  }
}

function splitHostPort(endpoint: string): [string, number] {
  const colon = endpoint.lastIndexOf(":");
  return [endpoint.slice(0, colon).replace(/^\[|\]$/g, ""), Number(endpoint.slice(colon + 1))];
}
