// Traffic for the encryption namespace test: `ip netns exec <ns> node esp-traffic.mjs <mode> ...`.
//   udp-echo <addr> <port>                       echo every datagram back
//   udp-stream <addr> <port> <count> <perTick>   send <count> numbered datagrams, <perTick> every 2 ms,
//                                                count the echoes; print progress and, at the end,
//                                                {"done":true,"sent","received","missing":[...]}; before
//                                                the count starts, warm-up datagrams (0xffffffff) until one
//                                                is echoed, so neighbour resolution on the path loses nothing counted
//   udp-send <addr> <port> <hex>[,<hex>...]      send these datagrams, then {"sent":n}
//   udp-run <addr> <port> <stopFile>             like udp-stream (warm-up, one numbered datagram every 2 ms)
//                                                until <stopFile> exists; then {"done":true,"sent","received",
//                                                "lost":[{"from","to","firstSentAt","lastSentAt"}]}: the
//                                                unanswered numbers as ranges with their send times (ms since
//                                                1970), so a caller can tell when they were sent
//   tcp-echo <addr> <port>                       echo every byte on every connection
//   tcp-run <addr> <port> <stopFile>             one connection; 64 bytes every 50 ms until <stopFile>
//                                                exists, then wait for the echo of every byte (60 s at most):
//                                                {"done":true,"sentBytes","echoedBytes","error"?: code, "closedEarly"}
import dgram from "node:dgram";
import net from "node:net";
import { existsSync } from "node:fs";

const [mode, addr, portArg, countArg, perTickArg] = process.argv.slice(2);
const port = Number(portArg);
const print = (o) => process.stdout.write(JSON.stringify(o) + "\n");

if (mode === "udp-echo") {
  const s = dgram.createSocket("udp4");
  s.on("message", (msg, rinfo) => s.send(msg, rinfo.port, rinfo.address));
  s.bind(port, addr, () => print({ ready: true }));
} else if (mode === "udp-stream") {
  const count = Number(countArg);
  const perTick = Number(perTickArg ?? 1);
  const s = dgram.createSocket("udp4");
  const got = new Uint8Array(count);
  let sent = 0;
  let received = 0;
  let warm = false;
  s.on("message", (msg) => {
    const n = msg.readUInt32BE(0);
    if (n === 0xffffffff) warm = true;
    if (n < count && !got[n]) {
      got[n] = 1;
      received++;
    }
  });
  s.bind(0, async () => {
    const payload = Buffer.alloc(200);
    payload.writeUInt32BE(0xffffffff, 0);
    for (let i = 0; !warm; i++) {
      if (i === 200) {
        process.stderr.write("esp-traffic: no echo within 10 s\n");
        process.exit(1);
      }
      s.send(payload, port, addr);
      await new Promise((r) => setTimeout(r, 50));
    }
    print({ ready: true });
    const timer = setInterval(() => {
      for (let k = 0; k < perTick && sent < count; k++) {
        // A buffer per datagram: send() reads it later, after the next number was written.
        const d = Buffer.alloc(200);
        d.writeUInt32BE(sent++, 0);
        s.send(d, port, addr);
      }
      if (sent % 250 < perTick) print({ progress: true, sent, received });
      if (sent >= count) {
        clearInterval(timer);
        setTimeout(() => {
          const missing = [];
          for (let i = 0; i < count && missing.length < 50; i++) if (!got[i]) missing.push(i);
          print({ done: true, sent, received, missing });
          s.close();
        }, 1500);
      }
    }, 2);
  });
} else if (mode === "udp-send") {
  const s = dgram.createSocket("udp4");
  const datagrams = countArg.split(",").map((h) => Buffer.from(h, "hex"));
  s.bind(0, () => {
    let left = datagrams.length;
    for (const d of datagrams) s.send(d, port, addr, () => {
      if (--left === 0) {
        print({ sent: datagrams.length });
        s.close(); // and exit when stdout has drained (process.exit could cut the line off a pipe)
      }
    });
  });
} else if (mode === "udp-run") {
  const stopFile = countArg;
  const s = dgram.createSocket("udp4");
  const sentAt = []; // send time of datagram i
  const got = [];
  let received = 0;
  let warm = false;
  s.on("message", (msg) => {
    const n = msg.readUInt32BE(0);
    if (n === 0xffffffff) warm = true;
    else if (n < sentAt.length && !got[n]) {
      got[n] = true;
      received++;
    }
  });
  s.bind(0, async () => {
    const warmup = Buffer.alloc(200);
    warmup.writeUInt32BE(0xffffffff, 0);
    for (let i = 0; !warm; i++) {
      if (i === 200) {
        process.stderr.write("esp-traffic: no echo within 10 s\n");
        process.exit(1);
      }
      s.send(warmup, port, addr);
      await new Promise((r) => setTimeout(r, 50));
    }
    print({ ready: true });
    const timer = setInterval(() => {
      const d = Buffer.alloc(200);
      d.writeUInt32BE(sentAt.length, 0);
      sentAt.push(Date.now());
      s.send(d, port, addr);
      if (sentAt.length % 250 === 0) print({ progress: true, sent: sentAt.length, received, at: Date.now() });
      if (existsSync(stopFile)) {
        clearInterval(timer);
        setTimeout(() => {
          const lost = [];
          for (let i = 0; i < sentAt.length; i++) {
            if (got[i]) continue;
            const last = lost[lost.length - 1];
            if (last && last.to === i - 1) {
              last.to = i;
              last.lastSentAt = sentAt[i];
            } else lost.push({ from: i, to: i, firstSentAt: sentAt[i], lastSentAt: sentAt[i] });
          }
          print({ done: true, sent: sentAt.length, received, lost });
          s.close();
        }, 1500);
      }
    }, 2);
  });
} else if (mode === "tcp-echo") {
  const server = net.createServer((c) => {
    c.on("error", () => {});
    c.pipe(c);
  });
  server.listen(port, addr, () => print({ ready: true }));
} else if (mode === "tcp-run") {
  const stopFile = countArg;
  let sentBytes = 0;
  let echoedBytes = 0;
  let error;
  let closed = false;
  let finished = false;
  const c = net.connect(port, addr);
  const finish = () => {
    if (finished) return;
    finished = true;
    print({ done: true, sentBytes, echoedBytes, ...(error ? { error } : {}), closedEarly: closed });
    c.destroy();
  };
  c.on("error", (e) => { error = e.code ?? e.message; });
  c.on("close", () => { closed = true; finish(); });
  c.on("data", (d) => { echoedBytes += d.length; });
  c.on("connect", () => {
    print({ ready: true });
    const timer = setInterval(() => {
      if (existsSync(stopFile)) {
        clearInterval(timer);
        const deadline = Date.now() + 60_000;
        const drain = setInterval(() => {
          if (echoedBytes >= sentBytes || Date.now() > deadline) {
            clearInterval(drain);
            finish();
          }
        }, 50);
        return;
      }
      c.write(Buffer.alloc(64, sentBytes & 0xff));
      sentBytes += 64;
      if (sentBytes % (64 * 20) === 0) print({ progress: true, sentBytes, echoedBytes, at: Date.now() });
    }, 50);
  });
} else {
  process.stderr.write(`esp-traffic: unknown mode ${mode}\n`);
  process.exit(2);
}
