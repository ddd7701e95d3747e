/**
 * The namespace end of the cluster demo's bridges, run inside a node (or the
 * control) namespace. A node namespace has its own loopback, so a service on
 * one side's 127.0.0.1 is out of the other's reach; the filesystem is
 * shared, so a unix socket is not.
 *
 *     ip netns exec <ns> node dist/host/demo/cluster/ns-bridge.js <port> <unix socket>
 *
 * listens on the namespace's 127.0.0.1:<port> and pipes every connection to
 * the socket, whose other end (kvstore-bridge.ts, in the demo process) pipes
 * it on to etcd on the host.
 *
 *     ip netns exec <ns> node dist/host/demo/cluster/ns-bridge.js --expose <unix socket> <port>
 *
 * the other way: listens on the unix socket (0600) and pipes every connection
 * to the namespace's 127.0.0.1:<port> (metrics-bridge.ts: an agent's metrics
 * endpoint reached from the host). Prints {"ready":true} once listening.
 */
import net from "node:net";
import { chmodSync, rmSync } from "node:fs";
import { pipeBothWays } from "./pipe.js";

const args = process.argv.slice(2);
const expose = args[0] === "--expose";
const [first = "", second = ""] = expose ? args.slice(1) : args;
const server = expose
  ? net.createServer((client) => pipeBothWays(client, net.connect(Number(second), "127.0.0.1")))
  : net.createServer((client) => pipeBothWays(client, net.connect(second)));
server.on("error", (err) => {
  process.stderr.write(`ns-bridge: ${err.message}\n`);
  process.exit(1);
});
const ready = () => process.stdout.write(JSON.stringify({ ready: true }) + "\n");
if (expose) {
  rmSync(first, { force: true });
  server.listen(first, () => {
    chmodSync(first, 0o600);
    ready();
  });
} else {
  server.listen(Number(first), "127.0.0.1", ready);
}
