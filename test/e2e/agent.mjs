// The traffic end of the namespace test, run as a child process inside a
// network namespace (`ip netns exec <ns> node agent.mjs <mode> ...`). Plain
// JavaScript so Node 20 runs it without a TypeScript step. Every mode prints
// one JSON line on stdout when done (servers also print {"ready":true} once
// listening), exits 0 on success, and bounds its own run time so a lost
// packet cannot hang it (the parent kills it on its own timeout as well).
//
//   tcp-server <addr> <port>            accept one connection, echo, close
//   tcp-client <addr> <port> <message>  connect, send, read the echo, close
//   udp-server <addr> <port> <count>    answer <count> datagrams
//   udp-client <addr> <port> <count>    send <count> requests, one at a time
//   ping <addr> <id> <count>            ICMP/ICMPv6 echo through a ping socket
import net from "node:net";
import dgram from "node:dgram";
import { writeFileSync } from "node:fs";
import { createRequire } from "node:module";

const [mode, addr, portArg, extra] = process.argv.slice(2);
const port = Number(portArg);
const LIMIT_MS = Number(process.env.AGENT_LIMIT_MS ?? 8000);

const timer = setTimeout(() => fail(`${mode}: gave up after ${LIMIT_MS} ms`), LIMIT_MS);
timer.unref();

function done(result) {
  process.stdout.write(JSON.stringify(result) + "\n");
  process.exit(0);
}

function fail(message) {
  process.stderr.write(`agent: ${message}\n`);
  process.exit(1);
}

function ready() {
  process.stdout.write(JSON.stringify({ ready: true }) + "\n");
}

function tcpServer() {
  const server = net.createServer((sock) => {
    let received = "";
    const { remoteAddress, remotePort } = sock;
    sock.setEncoding("utf8");
    sock.on("data", (chunk) => {
      received += chunk;
      sock.write(`echo:${chunk}`);
    });
    // allowHalfOpen is false: our FIN follows the client's.
    sock.on("close", () => done({ received, remoteAddress, remotePort }));
    sock.on("error", (err) => fail(`tcp-server socket: ${err.message}`));
    server.close();
  });
  server.on("error", (err) => fail(`tcp-server: ${err.message}`));
  server.listen({ host: addr, port, exclusive: true }, ready);
}

function tcpClient() {
  const message = extra;
  const sock = net.connect({ host: addr, port });
  let reply = "";
  let localPort = 0;
  sock.setEncoding("utf8");
  sock.on("connect", () => {
    localPort = sock.localPort;
    sock.write(message);
  });
  sock.on("data", (chunk) => {
    reply += chunk;
    if (reply.length >= message.length + 5) sock.end(); // our FIN first
  });
  sock.on("close", (hadError) => {
    if (hadError) return;
    done({ reply, localPort });
  });
  sock.on("error", (err) => fail(`tcp-client: ${err.message}`));
}

function udpServer() {
  const count = Number(extra);
  const sock = dgram.createSocket(net.isIPv6(addr) ? "udp6" : "udp4");
  let answered = 0;
  let remotePort = 0;
  sock.on("message", (msg, rinfo) => {
    remotePort = rinfo.port;
    sock.send(Buffer.concat([Buffer.from("echo:"), msg]), rinfo.port, rinfo.address, (err) => {
      if (err) fail(`udp-server send: ${err.message}`);
      answered += 1;
      // Every datagram is answered (a resent request too); the last request ends the exchange.
      if (msg.toString() === `request-${count - 1}`) sock.close(() => done({ answered, remotePort }));
    });
  });
  sock.on("error", (err) => fail(`udp-server: ${err.message}`));
  sock.bind(port, addr, ready);
}

function udpClient() {
  const count = Number(extra);
  const sock = dgram.createSocket(net.isIPv6(addr) ? "udp6" : "udp4");
  let replies = 0;
  let sent = 0;
  // UDP has no retransmission of its own: a request still unanswered after a second is sent again.
  const resend = setInterval(() => send(), 1000);
  const send = () => {
    sent += 1;
    sock.send(Buffer.from(`request-${replies}`), port, addr, (err) => err && fail(`udp-client send: ${err.message}`));
  };
  sock.on("message", (msg) => {
    const text = msg.toString();
    const n = /^echo:request-(\d+)$/.exec(text)?.[1];
    if (n === undefined) fail(`udp-client: unexpected reply ${JSON.stringify(text)}`);
    if (Number(n) !== replies) return; // the answer to a resent request we already have
    replies += 1;
    if (replies < count) return send();
    clearInterval(resend);
    const localPort = sock.address().port;
    sock.close(() => done({ replies, sent, localPort }));
  });
  sock.on("error", (err) => fail(`udp-client: ${err.message}`));
  sock.bind(0, () => send());
}

/**
 * Echo requests through an unprivileged-style ping socket (SOCK_DGRAM,
 * IPPROTO_ICMP/ICMPV6), via libc through koffi (already a dependency), so the
 * test needs no ping binary. The kernel fills in the echo identifier from the
 * socket's bound "port" and checksums the message; recv returns only replies
 * for this socket, without the IP header.
 */
function ping() {
  const id = port;
  const count = Number(extra);
  const v6 = net.isIPv6(addr);
  // Ping sockets are allowed only to groups in this range; in a new namespace it is "1 0" (nobody).
  writeFileSync("/proc/sys/net/ipv4/ping_group_range", "0 2147483647");
  const require = createRequire(process.env.MEMBRANE_ROOT + "/package.json");
  const koffi = require("koffi");
  const lib = koffi.load("libc.so.6");
  const socket = lib.func("socket", "int", ["int", "int", "int"]);
  const bind = lib.func("bind", "int", ["int", "void *", "uint32_t"]);
  const setsockopt = lib.func("setsockopt", "int", ["int", "int", "int", "void *", "uint32_t"]);
  const sendto = lib.func("sendto", "long", ["int", "void *", "size_t", "int", "void *", "uint32_t"]);
  const recv = lib.func("recv", "long", ["int", "void *", "size_t", "int"]);
  const close = lib.func("close", "int", ["int"]);
  const AF_INET = 2, AF_INET6 = 10, SOCK_DGRAM = 2, IPPROTO_ICMP = 1, IPPROTO_ICMPV6 = 58;
  const SOL_SOCKET = 1, SO_RCVTIMEO = 20;

  // struct sockaddr_in / sockaddr_in6; for a ping socket the port is the echo identifier.
  const sockaddr = (ip, p) => {
    const sa = Buffer.alloc(v6 ? 28 : 16);
    sa.writeUInt16LE(v6 ? AF_INET6 : AF_INET, 0);
    sa.writeUInt16BE(p, 2);
    if (ip !== undefined) (v6 ? ipv6Bytes(ip) : Buffer.from(ip.split(".").map(Number))).copy(sa, v6 ? 8 : 4);
    return sa;
  };
  const fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM, v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP);
  if (fd < 0) fail(`ping: socket: errno ${koffi.errno()}`);
  const local = sockaddr(undefined, id);
  if (bind(fd, local, local.length) !== 0) fail(`ping: bind id ${id}: errno ${koffi.errno()}`);
  const dest = sockaddr(addr, 0);
  const tv = Buffer.alloc(16);
  tv.writeBigInt64LE(3n, 0); // struct timeval: 3 s per receive (a first neighbour solicitation may go unanswered; the retry is 1 s later)
  if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, tv.length) !== 0) fail(`ping: SO_RCVTIMEO: errno ${koffi.errno()}`);

  const requestType = v6 ? 128 : 8;
  const replyType = v6 ? 129 : 0;
  let replies = 0;
  for (let seq = 1; seq <= count; seq++) {
    const msg = Buffer.alloc(8 + 16);
    msg[0] = requestType;
    msg.writeUInt16BE(id, 4);
    msg.writeUInt16BE(seq, 6);
    msg.write("membrane-e2e-pin", 8);
    if (sendto(fd, msg, msg.length, 0, dest, dest.length) !== msg.length) fail(`ping: sendto: errno ${koffi.errno()}`);
    const buf = Buffer.alloc(1500);
    for (;;) {
      const n = recv(fd, buf, buf.length, 0);
      if (n < 0) fail(`ping: no reply to seq ${seq} within 3 s (errno ${koffi.errno()})`);
      if (n >= 8 && buf[0] === replyType && buf.readUInt16BE(6) === seq) break;
    }
    replies += 1;
  }
  close(fd);
  done({ replies, id });
}

function ipv6Bytes(a) {
  const [head, tail] = a.split("::");
  const words = (s) => (s ? s.split(":").map((w) => parseInt(w, 16)) : []);
  const h = words(head);
  const t = tail === undefined ? [] : words(tail);
  const all = [...h, ...new Array(8 - h.length - t.length).fill(0), ...t];
  const out = Buffer.alloc(16);
  all.forEach((w, i) => out.writeUInt16BE(w, i * 2));
  return out;
}

const modes = { "tcp-server": tcpServer, "tcp-client": tcpClient, "udp-server": udpServer, "udp-client": udpClient, ping };
if (!modes[mode]) fail(`unknown mode ${mode}`);
modes[mode]();
