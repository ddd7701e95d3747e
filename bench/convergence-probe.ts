/**
 * The probe end of bench:convergence, run inside a pod's namespace
 * (ip netns exec <ns> node dist/bench/convergence-probe.js ...):
 *
 *   serve   <port> <name>                          TCP server: every connection gets "<name>\n", then close
 *   connect <addr> <port> <everyMs> <timeoutMs>    a NEW connection every everyMs (a new source port, so
 *                                                  a new flow the datapath decides afresh: LB choice and
 *                                                  policy), until killed; one JSON line per attempt:
 *                                                  {"t":<send time, ms since the epoch>,"ok":bool,"reply":name,
 *                                                  "port":<its source port once connected, else 0>}
 *
 * Times are performance.timeOrigin + performance.now(): the same clock as
 * the bench process on this machine, sub-millisecond. `t` is when the
 * connect was issued, so the SYN left at t (plus the stack's few µs).
 */
import net from "node:net";

const [mode = "", a = "", b = "", c = "", d = ""] = process.argv.slice(2);
const now = () => performance.timeOrigin + performance.now();
const print = (line: object) => process.stdout.write(JSON.stringify(line) + "\n");

if (mode === "serve") {
  const server = net.createServer((s) => {
    s.on("error", () => undefined);
    s.end(`${b}\n`);
  });
  server.listen(Number(a), "0.0.0.0", () => print({ ready: true }));
} else if (mode === "connect") {
  const [addr, port, everyMs, timeoutMs] = [a, Number(b), Number(c), Number(d)];
  const attempt = () => {
    const t = now();
    let reply = "";
    let settled = false;
    let localPort = 0;
    const s = net.connect({ host: addr, port });
    const finish = (ok: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.destroy();
      print({ t, ok, reply: reply.trim(), port: localPort });
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    s.on("connect", () => (localPort = s.localPort ?? 0));
    s.setEncoding("utf8");
    s.on("data", (chunk: string) => (reply += chunk));
    s.on("end", () => finish(reply.length > 0));
    s.on("error", () => finish(false));
  };
  print({ ready: true });
  setInterval(attempt, everyMs);
} else {
  process.stderr.write(`convergence-probe: unknown mode ${mode}\n`);
  process.exit(2);
}
