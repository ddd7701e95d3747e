/**
 * The namespace end of the cluster demo's kvstore bridge, run inside a node
 * (or the control) namespace:
 *
 *     ip netns exec <ns> node dist/host/demo/cluster/ns-bridge.js <port> <unix socket>
 *
 * A node namespace has its own loopback, so an etcd listening on the host's
 * 127.0.0.1 is out of its reach; the filesystem is shared, so a unix socket
 * is not. This listens on the namespace's 127.0.0.1:<port> and pipes every
 * connection to the socket, whose other end (kvstore-bridge.ts, in the demo
 * process) pipes it on to etcd. Prints {"ready":true} once listening.
 */
import net from "node:net";

const [portArg = "", socketPath = ""] = process.argv.slice(2);
const server = net.createServer((client) => {
  const up = net.connect(socketPath);
  client.pipe(up);
  up.pipe(client);
  const close = () => {
    client.destroy();
    up.destroy();
  };
  client.on("error", close);
  up.on("error", close);
  client.on("close", close);
  up.on("close", close);
});
server.on("error", (err) => {
  process.stderr.write(`ns-bridge: ${err.message}\n`);
  process.exit(1);
});
server.listen(Number(portArg), "127.0.0.1", () => process.stdout.write(JSON.stringify({ ready: true }) + "\n"));
