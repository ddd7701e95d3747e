// Traffic for the NAT namespace test, run with `ip netns exec <ns> node nat-traffic.mjs <mode> ...`.
// Clients bind a chosen source port (the point of the test: two clients, one port); servers
// report the address and port each peer came from. JSON lines on stdout, exit 0 on success.
//
//   tcp-server <addr> <port> <n>                 accept n connections, echo, report each peer
//   udp-server <addr> <port> <n>                 answer n datagrams, report each peer
//   tcp-client <addr> <port> <localPort> <msg>   connect from localPort, send, print the echo
//   udp-client <addr> <port> <localPort> <msg>   send from localPort, print the answer
import net from "node:net";
import dgram from "node:dgram";

const [mode, addr, portArg, a3, a4] = process.argv.slice(2);
const port = Number(portArg);
const limit = setTimeout(() => fail(`${mode}: gave up after 8000 ms`), 8000);
limit.unref();
const print = (o) => process.stdout.write(JSON.stringify(o) + "\n");
function fail(msg) {
  process.stderr.write(`nat-traffic: ${msg}\n`);
  process.exit(1);
}

if (mode === "tcp-server") {
  const want = Number(a3);
  const peers = [];
  const server = net.createServer((sock) => {
    const peer = { remoteAddress: sock.remoteAddress, remotePort: sock.remotePort };
    sock.on("data", (d) => sock.write(`echo:${d}`));
    sock.on("error", (e) => fail(`tcp-server socket: ${e.message}`));
    sock.on("close", () => {
      peers.push(peer);
      if (peers.length === want) { print({ peers }); process.exit(0); }
    });
  });
  server.on("error", (e) => fail(`tcp-server: ${e.message}`));
  server.listen({ host: addr, port }, () => print({ ready: true }));
} else if (mode === "udp-server") {
  const want = Number(a3);
  const peers = new Map(); // a client may resend: count distinct peers
  const sock = dgram.createSocket(net.isIPv6(addr) ? "udp6" : "udp4");
  sock.on("message", (msg, rinfo) => {
    peers.set(`${rinfo.address} ${rinfo.port}`, { remoteAddress: rinfo.address, remotePort: rinfo.port });
    sock.send(`echo:${msg}`, rinfo.port, rinfo.address, () => {
      if (peers.size === want) { print({ peers: [...peers.values()] }); process.exit(0); }
    });
  });
  sock.on("error", (e) => fail(`udp-server: ${e.message}`));
  sock.bind(port, addr, () => print({ ready: true }));
} else if (mode === "tcp-client") {
  const sock = net.connect({ host: addr, port, localPort: Number(a3) });
  let reply = "";
  sock.setEncoding("utf8");
  sock.on("connect", () => sock.end(a4));
  sock.on("data", (d) => (reply += d));
  sock.on("error", (e) => fail(`tcp-client: ${e.message}`));
  sock.on("close", () => { print({ reply }); process.exit(reply === `echo:${a4}` ? 0 : 1); });
} else if (mode === "udp-client") {
  const sock = dgram.createSocket(net.isIPv6(addr) ? "udp6" : "udp4");
  sock.on("message", (msg) => { print({ reply: String(msg) }); process.exit(0); });
  sock.on("error", (e) => fail(`udp-client: ${e.message}`));
  sock.bind(Number(a3), () => {
    const send = () => sock.send(a4, port, addr);
    send();
    setInterval(send, 1000).unref(); // a first packet may wait on neighbour resolution
  });
} else {
  fail(`unknown mode ${mode}`);
}
