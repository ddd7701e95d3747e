// Traffic for the agent tests: UDP datagrams from <src> (bound, so policy routing by source applies) to <dst>,
// each to the next destination port (so each is a new conntrack flow), <perSecond> of them, until killed. Sends fail while no agent routes <dst> (between a kill
// and the next start): those are counted and ignored. Prints {"ready":true}, then {"sent":n,"failed":m} every second.
import { createSocket } from "node:dgram";

const [src, dst, perSecond = "100"] = process.argv.slice(2);
const rate = Number(perSecond);
const socket = createSocket("udp4");
let port = 1024;
let sent = 0;
let failed = 0;
const payload = Buffer.from("membrane agent test flow");

socket.on("error", () => failed++);
socket.bind(0, src, () => {
  console.log(JSON.stringify({ ready: true }));
  setInterval(() => {
    port = port >= 65000 ? 1024 : port + 1;
    socket.send(payload, port, dst, (err) => (err ? failed++ : sent++));
  }, Math.max(1, Math.round(1000 / rate)));
  setInterval(() => console.log(JSON.stringify({ sent, failed })), 1000);
});
