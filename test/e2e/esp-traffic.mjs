// Traffic for the encryption namespace test: `ip netns exec <ns> node esp-traffic.mjs <mode> ...`.
//   udp-echo <addr> <port>                       echo every datagram back
//   udp-stream <addr> <port> <count> <perTick>   send <count> numbered datagrams, <perTick> every 2 ms,
//                                                count the echoes; print progress and, at the end,
//                                                {"done":true,"sent","received","missing":[...]}; before
//                                                the count starts, warm-up datagrams (0xffffffff) until one
//                                                is echoed, so neighbour resolution on the path loses nothing counted
//   udp-send <addr> <port> <hex>[,<hex>...]      send these datagrams, then {"sent":n}
import dgram from "node:dgram";

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
} else {
  process.stderr.write(`esp-traffic: unknown mode ${mode}\n`);
  process.exit(2);
}
