/**
 * The traffic end of the namespace demo and tests, run as a child process
 * inside a network namespace:
 *
 *     ip netns exec <ns> node dist/host/demo/agent.js <mode> <addr> <port> [args...]
 *
 * (always the compiled file, like the forwarder worker, so the tests running
 * from source use it too). Every mode prints JSON lines on stdout: servers
 * print {"ready":true} once listening; the one-shot modes print one result
 * line when done and exit 0 on success, 1 with the reason on stderr. Run time
 * is bounded by AGENT_LIMIT_MS (default 8000), so a lost packet cannot hang
 * it; the parent kills it on its own timeout as well.
 *
 *   tcp-server <addr> <port>                      accept one connection, echo with an "echo:" prefix, close after the client
 *   tcp-client <addr> <port> <message>            connect, send, read the echo, close
 *   tcp-echo   <addr> <port>                      echo server, any number of connections, bytes echoed as they are;
 *                                                 {"peer":{...}} on accept, {"connection":{...}} on close
 *   tcp-stream <addr> <port> <count> <everyMs>    connect ({"connected":true,"localPort":n}), send line i every
 *                                                 everyMs, expect each echoed in order ({"echo":i}), then close;
 *                                                 any reset, early close or out-of-order echo fails
 *   tcp-sink   <addr> <port>                      accept one connection, read to its end: {"received":n,"sha256":hex}
 *   tcp-bulk   <addr> <port> <bytes>              connect, send <bytes> of a fixed pseudo-random stream in 256 KiB
 *                                                 writes (the sender's stack makes TSO super-packets of them), close:
 *                                                 {"sent":n,"sha256":hex,"localPort":n}
 *   udp-server <addr> <port> <count>              answer <count> datagrams
 *   udp-echo   <addr> <port>                      answer every datagram, until killed; {"peer":{...}} for each new sender
 *   udp-client <addr> <port> <count> [everyMs]    send <count> requests, one at a time, everyMs apart:
 *                                                 {"replies":n,"sent":n,"localPort":n,"from":addr of the answers}
 *   udp-burst  <addr> <port> <count> [burst]      connected socket: <count> 36-byte datagrams numbered 0.. (4-byte
 *                                                 big-endian sequence first), <burst> (default 64) sent back to back, then
 *                                                 a 5 ms pause: {"sent":n,"localPort":n}
 *   udp-collect <addr> <port> <count>             receive numbered datagrams until <count> or 1.5 s of silence:
 *                                                 {"received":n,"inOrder":bool,"firstGap":i|null}
 *   ping       <addr> <id> <count> [everyMs]      ICMP/ICMPv6 echo through a ping socket
 *   icmp-watch <addr> 0                           {"peer":{...}} for each new (source, identifier) of the echo requests
 *                                                 to <addr> (a raw socket: the kernel still answers them), until killed
 *
 * The servers' "peer" lines say who they saw: {"peer":{"proto":"tcp"|"udp"|"icmp","address":a,"port":n}}
 * (for icmp, port is the echo identifier): behind a masquerading node, the node's address.
 */
import net from "node:net";
import dgram from "node:dgram";
import { writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { koffi } from "../sys/ffi.js";
import { libcLibrary } from "../sys/libc.js";
import { IpProto } from "../packet/ip-proto.js";

const [mode = "", addr = "", portArg, extra, extra2] = process.argv.slice(2);
const port = Number(portArg);
const LIMIT_MS = Number(process.env.AGENT_LIMIT_MS ?? 8000);

const timer = setTimeout(() => fail(`${mode}: gave up after ${LIMIT_MS} ms`), LIMIT_MS);
timer.unref();

function print(line: object): void {
  process.stdout.write(JSON.stringify(line) + "\n");
}

function done(result: object): never {
  print(result);
  process.exit(0);
}

function fail(message: string): never {
  process.stderr.write(`agent: ${message}\n`);
  process.exit(1);
}

const ready = () => print({ ready: true });

/** Prints a "peer" line the first time a (proto, address, port) is seen. */
const peersSeen = new Set<string>();
function peer(proto: "tcp" | "udp" | "icmp", address: string | undefined, port: number | undefined): void {
  const key = `${proto} ${address} ${port}`;
  if (peersSeen.has(key)) return;
  peersSeen.add(key);
  print({ peer: { proto, address, port } });
}

function tcpServer(): void {
  const server = net.createServer((sock) => {
    let received = "";
    const { remoteAddress, remotePort } = sock;
    sock.setEncoding("utf8");
    sock.on("data", (chunk: string) => {
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

function tcpClient(): void {
  const message = extra ?? "";
  const sock = net.connect({ host: addr, port });
  let reply = "";
  let localPort = 0;
  sock.setEncoding("utf8");
  sock.on("connect", () => {
    localPort = sock.localPort ?? 0;
    sock.write(message);
  });
  sock.on("data", (chunk: string) => {
    reply += chunk;
    if (reply.length >= message.length + 5) sock.end(); // our FIN first
  });
  sock.on("close", (hadError) => {
    if (hadError) return;
    done({ reply, localPort });
  });
  sock.on("error", (err) => fail(`tcp-client: ${err.message}`));
}

function tcpEcho(): void {
  const server = net.createServer((sock) => {
    const { remoteAddress, remotePort } = sock;
    peer("tcp", remoteAddress, remotePort);
    let bytes = 0;
    sock.on("data", (chunk: Buffer) => {
      bytes += chunk.length;
      sock.write(chunk);
    });
    sock.on("close", (hadError) => print({ connection: { remoteAddress, remotePort, bytes, hadError } }));
    // A client that goes away mid-connection is its own business; the server carries on.
    sock.on("error", () => {});
  });
  server.on("error", (err) => fail(`tcp-echo: ${err.message}`));
  server.listen({ host: addr, port, exclusive: true }, ready);
}

function tcpStream(): void {
  const count = Number(extra);
  const every = Number(extra2 ?? 200);
  const sock = net.connect({ host: addr, port });
  let sent = 0;
  let echoed = 0;
  let buf = "";
  let localPort = 0;
  let sender: NodeJS.Timeout | undefined;
  sock.setEncoding("utf8");
  sock.setNoDelay(true);
  sock.on("connect", () => {
    localPort = sock.localPort ?? 0;
    print({ connected: true, localPort });
    const send = () => {
      sent += 1;
      sock.write(`${sent}\n`);
      if (sent >= count) clearInterval(sender);
    };
    send();
    if (sent < count) sender = setInterval(send, every);
  });
  sock.on("data", (chunk: string) => {
    buf += chunk;
    for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line !== String(echoed + 1)) fail(`tcp-stream: expected echo ${echoed + 1}, got ${JSON.stringify(line)}`);
      echoed += 1;
      print({ echo: echoed, at: Date.now() });
    }
    if (echoed >= count) sock.end(); // our FIN first
  });
  sock.on("end", () => {
    if (echoed < count) fail(`tcp-stream: the server closed the connection after ${echoed} of ${count} echoes`);
  });
  sock.on("close", (hadError) => {
    if (hadError) return; // reported by "error"
    if (echoed < count) fail(`tcp-stream: connection closed after ${echoed} of ${count} echoes`);
    done({ sent, echoed, localPort });
  });
  sock.on("error", (err) => fail(`tcp-stream: ${err.message} after ${echoed} of ${count} echoes`));
}

function tcpSink(): void {
  const server = net.createServer((sock) => {
    const hash = createHash("sha256");
    let received = 0;
    sock.on("data", (chunk: Buffer) => {
      received += chunk.length;
      hash.update(chunk);
    });
    sock.on("end", () => sock.end());
    sock.on("close", (hadError) => (hadError ? fail("tcp-sink: connection reset") : done({ received, sha256: hash.digest("hex") })));
    sock.on("error", (err) => fail(`tcp-sink socket: ${err.message}`));
    server.close();
  });
  server.on("error", (err) => fail(`tcp-sink: ${err.message}`));
  server.listen({ host: addr, port, exclusive: true }, ready);
}

/** The bytes tcp-bulk sends: an xorshift stream, so a segment put in the wrong place changes the hash. */
function bulkChunk(chunk: Buffer, state: { x: number }): void {
  let x = state.x;
  for (let i = 0; i < chunk.length; i += 4) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    chunk.writeInt32LE(x | 0, i);
  }
  state.x = x;
}

function tcpBulk(): void {
  const total = Number(extra);
  const CHUNK = 256 * 1024;
  if (!Number.isInteger(total) || total <= 0 || total % 4 !== 0) fail(`tcp-bulk: bytes must be a positive multiple of 4, got ${extra}`);
  const hash = createHash("sha256");
  const state = { x: 0x2545f491 };
  const sock = net.connect({ host: addr, port });
  let sent = 0;
  let localPort = 0;
  const pump = () => {
    while (sent < total) {
      const chunk = Buffer.alloc(Math.min(CHUNK, total - sent));
      bulkChunk(chunk, state);
      hash.update(chunk);
      sent += chunk.length;
      if (!sock.write(chunk)) return void sock.once("drain", pump);
    }
    sock.end();
  };
  sock.on("connect", () => {
    localPort = sock.localPort ?? 0;
    pump();
  });
  sock.resume();
  sock.on("close", (hadError) => (hadError ? undefined : done({ sent, sha256: hash.digest("hex"), localPort })));
  sock.on("error", (err) => fail(`tcp-bulk: ${err.message} after ${sent} bytes`));
}

function udpServer(forever: boolean): void {
  const count = Number(extra);
  const sock = dgram.createSocket(net.isIPv6(addr) ? "udp6" : "udp4");
  let answered = 0;
  let remotePort = 0;
  let remoteAddress = "";
  sock.on("message", (msg, rinfo) => {
    remotePort = rinfo.port;
    remoteAddress = rinfo.address;
    if (forever) peer("udp", rinfo.address, rinfo.port);
    sock.send(Buffer.concat([Buffer.from("echo:"), msg]), rinfo.port, rinfo.address, (err) => {
      if (err) fail(`udp-server send: ${err.message}`);
      answered += 1;
      // Every datagram is answered (a resent request too); the last request ends the exchange.
      if (!forever && msg.toString() === `request-${count - 1}`) sock.close(() => done({ answered, remotePort, remoteAddress }));
    });
  });
  sock.on("error", (err) => fail(`udp-server: ${err.message}`));
  sock.bind(port, addr, ready);
}

function udpClient(): void {
  const count = Number(extra);
  const every = Number(extra2 ?? 0);
  const sock = dgram.createSocket(net.isIPv6(addr) ? "udp6" : "udp4");
  let replies = 0;
  let sent = 0;
  let from = "";
  let timer: NodeJS.Timeout | undefined;
  // UDP has no retransmission of its own: a request still unanswered after a second is sent again.
  const send = () => {
    sent += 1;
    sock.send(Buffer.from(`request-${replies}`), port, addr, (err) => err && fail(`udp-client send: ${err.message}`));
    clearTimeout(timer);
    timer = setTimeout(send, 1000);
  };
  sock.on("message", (msg, rinfo) => {
    const text = msg.toString();
    const n = /^echo:request-(\d+)$/.exec(text)?.[1];
    if (n === undefined) fail(`udp-client: unexpected reply ${JSON.stringify(text)}`);
    if (Number(n) !== replies) return; // the answer to a resent request we already have
    replies += 1;
    // Where the answers come from: a service's VIP, not its backend, when reverse NAT works.
    from = rinfo.address;
    clearTimeout(timer);
    if (replies >= count) {
      const localPort = sock.address().port;
      sock.close(() => done({ replies, sent, localPort, from }));
    } else if (every > 0) {
      timer = setTimeout(send, every);
    } else {
      send();
    }
  });
  sock.on("error", (err) => fail(`udp-client: ${err.message}`));
  sock.bind(0, () => send());
}

/** A stream of small numbered datagrams in bursts: what write-side coalescing merges (a connected socket numbers its IPv4 ids one by one). */
function udpBurst(): void {
  const count = Number(extra);
  const burst = Number(extra2 ?? 64);
  const sock = dgram.createSocket(net.isIPv6(addr) ? "udp6" : "udp4");
  let sent = 0;
  const sendBurst = () => {
    const end = Math.min(count, sent + burst);
    let pending = end - sent;
    for (; sent < end; sent++) {
      const d = Buffer.alloc(36, 0x5a);
      d.writeUInt32BE(sent, 0);
      sock.send(d, (err) => {
        if (err) fail(`udp-burst send: ${err.message}`);
        if (--pending > 0) return;
        if (sent < count) setTimeout(sendBurst, 5);
        else sock.close(() => done({ sent, localPort }));
      });
    }
  };
  let localPort = 0;
  sock.on("error", (err) => fail(`udp-burst: ${err.message}`));
  sock.connect(port, addr, () => {
    localPort = sock.address().port;
    sendBurst();
  });
}

/** The other end of udp-burst: counts what arrived and whether in the order sent. */
function udpCollect(): void {
  const count = Number(extra);
  const sock = dgram.createSocket({ type: net.isIPv6(addr) ? "udp6" : "udp4", recvBufferSize: 4 << 20 });
  let received = 0;
  let firstGap: number | null = null;
  let idle: NodeJS.Timeout | undefined;
  const finish = () => sock.close(() => done({ received, inOrder: firstGap === null, firstGap }));
  sock.on("message", (msg) => {
    if (msg.length >= 4 && msg.readUInt32BE(0) !== received && firstGap === null) firstGap = received;
    received += 1;
    clearTimeout(idle);
    if (received >= count) finish();
    else idle = setTimeout(finish, 1500);
  });
  sock.on("error", (err) => fail(`udp-collect: ${err.message}`));
  sock.bind(port, addr, ready);
}

/**
 * Echo requests through a ping socket (SOCK_DGRAM, IPPROTO_ICMP/ICMPV6), via
 * libc through koffi, so no ping binary is needed. The kernel fills in the
 * echo identifier from the socket's bound "port" and checksums the message;
 * recv returns only replies for this socket, without the IP header.
 */
function ping(): void {
  const id = port;
  const count = Number(extra);
  const every = Number(extra2 ?? 0);
  const v6 = net.isIPv6(addr);
  // Ping sockets are allowed only to groups in this range; in a new namespace it is "1 0" (nobody).
  writeFileSync("/proc/sys/net/ipv4/ping_group_range", "0 2147483647");
  const k = koffi();
  const lib = libcLibrary();
  const socket = lib.func("socket", "int", ["int", "int", "int"]);
  const bind = lib.func("bind", "int", ["int", "void *", "uint32_t"]);
  const setsockopt = lib.func("setsockopt", "int", ["int", "int", "int", "void *", "uint32_t"]);
  const sendto = lib.func("sendto", "long", ["int", "void *", "size_t", "int", "void *", "uint32_t"]);
  const recv = lib.func("recv", "long", ["int", "void *", "size_t", "int"]);
  const close = lib.func("close", "int", ["int"]);
  const AF_INET = 2, AF_INET6 = 10, SOCK_DGRAM = 2, IPPROTO_ICMP = IpProto.PROTO_ICMP, IPPROTO_ICMPV6 = IpProto.PROTO_ICMPV6;
  const SOL_SOCKET = 1, SO_RCVTIMEO = 20;

  // struct sockaddr_in / sockaddr_in6; for a ping socket the port is the echo identifier.
  const sockaddr = (ip: string | undefined, p: number) => {
    const sa = Buffer.alloc(v6 ? 28 : 16);
    sa.writeUInt16LE(v6 ? AF_INET6 : AF_INET, 0);
    sa.writeUInt16BE(p, 2);
    if (ip !== undefined) (v6 ? ipv6Bytes(ip) : Buffer.from(ip.split(".").map(Number))).copy(sa, v6 ? 8 : 4);
    return sa;
  };
  const fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM, v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP) as number;
  if (fd < 0) fail(`ping: socket: errno ${k.errno()}`);
  const local = sockaddr(undefined, id);
  if (bind(fd, local, local.length) !== 0) fail(`ping: bind id ${id}: errno ${k.errno()}`);
  const dest = sockaddr(addr, 0);
  const tv = Buffer.alloc(16);
  tv.writeBigInt64LE(3n, 0); // struct timeval: 3 s per receive (a first neighbour solicitation may go unanswered; the retry is 1 s later)
  if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, tv.length) !== 0) fail(`ping: SO_RCVTIMEO: errno ${k.errno()}`);

  const requestType = v6 ? 128 : 8;
  const replyType = v6 ? 129 : 0;
  let replies = 0;
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  for (let seq = 1; seq <= count; seq++) {
    if (seq > 1 && every > 0) Atomics.wait(sleeper, 0, 0, every);
    const msg = Buffer.alloc(8 + 16);
    msg[0] = requestType;
    msg.writeUInt16BE(id, 4);
    msg.writeUInt16BE(seq, 6);
    msg.write("membrane-e2e-pin", 8);
    if (sendto(fd, msg, msg.length, 0, dest, dest.length) !== msg.length) fail(`ping: sendto: errno ${k.errno()}`);
    const buf = Buffer.alloc(1500);
    for (;;) {
      const n = recv(fd, buf, buf.length, 0) as number;
      if (n < 0) fail(`ping: no reply to seq ${seq} within 3 s (errno ${k.errno()})`);
      if (n >= 8 && buf[0] === replyType && buf.readUInt16BE(6) === seq) break;
    }
    replies += 1;
  }
  close(fd);
  done({ replies, id });
}

/**
 * Watches the echo requests to `addr` through a raw socket bound to it (a
 * copy of each: the kernel answers them as usual), polled without blocking
 * so the run-time limit still applies.
 */
function icmpWatch(): void {
  const v6 = net.isIPv6(addr);
  const k = koffi();
  const lib = libcLibrary();
  const socket = lib.func("socket", "int", ["int", "int", "int"]);
  const bind = lib.func("bind", "int", ["int", "void *", "uint32_t"]);
  const recvfrom = lib.func("recvfrom", "long", ["int", "void *", "size_t", "int", "void *", "void *"]);
  const AF_INET = 2, AF_INET6 = 10, SOCK_RAW = 3, IPPROTO_ICMP = IpProto.PROTO_ICMP, IPPROTO_ICMPV6 = IpProto.PROTO_ICMPV6, MSG_DONTWAIT = 0x40;
  const fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_RAW, v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP) as number;
  if (fd < 0) fail(`icmp-watch: socket: errno ${k.errno()}`);
  const local = Buffer.alloc(v6 ? 28 : 16);
  local.writeUInt16LE(v6 ? AF_INET6 : AF_INET, 0);
  (v6 ? ipv6Bytes(addr) : Buffer.from(addr.split(".").map(Number))).copy(local, v6 ? 8 : 4);
  if (bind(fd, local, local.length) !== 0) fail(`icmp-watch: bind ${addr}: errno ${k.errno()}`);
  const buf = Buffer.alloc(2048);
  const from = Buffer.alloc(28);
  const fromLen = Buffer.alloc(4); // socklen_t, in and out
  const requestType = v6 ? 128 : 8;
  setInterval(() => {
    for (;;) {
      fromLen.writeUInt32LE(from.length, 0);
      const n = recvfrom(fd, buf, buf.length, MSG_DONTWAIT, from, fromLen) as number;
      if (n < 0) return;
      // IPv4 raw sockets get the IP header too; IPv6 ones the ICMPv6 message alone.
      const at = v6 ? 0 : (buf[0] & 0x0f) * 4;
      if (n < at + 8 || buf[at] !== requestType) continue;
      const source = v6 ? formatIpv6(from.subarray(8, 24)) : [...from.subarray(4, 8)].join(".");
      peer("icmp", source, buf.readUInt16BE(at + 4));
    }
  }, 10);
  ready();
}

/** RFC 5952 text of 16 address bytes (as Node prints addresses: longest zero run compressed). */
function formatIpv6(b: Uint8Array): string {
  const words = Array.from({ length: 8 }, (_, i) => (b[2 * i] << 8) | b[2 * i + 1]);
  let best = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = (ws: number[]) => ws.map((w) => w.toString(16)).join(":");
  return best < 0 ? hex(words) : `${hex(words.slice(0, best))}::${hex(words.slice(best + bestLen))}`;
}

function ipv6Bytes(a: string): Buffer {
  const [head, tail] = a.split("::");
  const words = (s: string | undefined) => (s ? s.split(":").map((w) => parseInt(w, 16)) : []);
  const h = words(head);
  const t = tail === undefined ? [] : words(tail);
  const all = [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  const out = Buffer.alloc(16);
  all.forEach((w, i) => out.writeUInt16BE(w, i * 2));
  return out;
}

const modes: Record<string, () => void> = {
  "tcp-server": tcpServer,
  "tcp-client": tcpClient,
  "tcp-echo": tcpEcho,
  "tcp-stream": tcpStream,
  "tcp-sink": tcpSink,
  "tcp-bulk": tcpBulk,
  "udp-server": () => udpServer(false),
  "udp-echo": () => udpServer(true),
  "udp-client": udpClient,
  "udp-burst": udpBurst,
  "udp-collect": udpCollect,
  ping,
  "icmp-watch": icmpWatch,
};
const run = modes[mode];
if (!run) fail(`unknown mode ${mode}`);
run();
