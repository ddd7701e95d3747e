// What happens to these packets? Build a datapath, decide a TCP handshake, read the table.
import { Datapath } from "membrane";
import { packet4 } from "membrane/packet";

const dp = await Datapath.create({ conntrack: { tcpEntries: 65536, otherEntries: 65536 } });
const client = packet4({ src: "10.0.1.10", dst: "10.0.2.20" });
const server = packet4({ src: "10.0.2.20", dst: "10.0.1.10" });

const now = 1000; // the datapath clock, in seconds
for (const [name, packet] of [
  ["SYN", client.tcp({ sport: 40000, dport: 80, flags: { syn: true } })],
  ["SYN-ACK", server.tcp({ sport: 80, dport: 40000, flags: { syn: true, ack: true } })],
  ["ACK", client.tcp({ sport: 40000, dport: 80, flags: { ack: true } })],
]) {
  const v = dp.decide(packet, { now });
  console.log(`${name.padEnd(8)} ${v.verdict} ${v.ct} ${v.direction}`);
}

for (const { table, tuple, entry } of dp.conntrack()) {
  console.log(`${table} ${tuple.src}:${tuple.sport} -> ${tuple.dst}:${tuple.dport} expires in ${entry.lifetime - now} s`);
}
console.log(dp.counters().forwarded);
