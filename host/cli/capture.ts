/**
 * `membrane capture -w <file>`: writes what the running agent's forwarder
 * sees, before and after the datapath, to a pcapng file Wireshark and tshark
 * open (interface "before-datapath" and "after-datapath"; packets the
 * datapath dropped carry a comment with the reason). The file is valid after
 * every packet, so stopping at any moment leaves a readable capture.
 */
import { closeSync, openSync, writeSync } from "node:fs";
import { Command, Option } from "commander";
import { streamAgent } from "../api/stream-client.js";
import type { CapturedPacketJson } from "../capture/api-route.js";
import { CAPTURE_STAGES } from "../capture/settings.js";
import { InvalidInputError } from "../errors.js";
import { LinkType } from "../pcap/link-type.js";
import { pcapngHeader, pcapngPacket } from "../pcap/pcapng-write.js";
import { DEFAULT_AGENT_SOCKET } from "./cluster.js";
import { example, integerArg, outputOf } from "./command.js";
import { streamStop } from "./stream-stop.js";

const collect = (value: string, previous: string[] = []) => [...previous, value];

interface CaptureFlags {
  write?: string;
  stage?: string[];
  address?: string;
  port?: string;
  rate?: string;
  snaplen?: string;
  count?: string;
  seconds?: string;
  socket?: string;
}

const INTERFACES = [
  { name: "before-datapath", linkType: LinkType.Raw },
  { name: "after-datapath", linkType: LinkType.Raw },
  { name: "before-datapath-eth", linkType: LinkType.Ethernet },
  { name: "after-datapath-eth", linkType: LinkType.Ethernet },
];

export function registerCapture(program: Command): void {
  const cmd = program
    .command("capture")
    .description("write the packets the running agent's forwarder sees, before and after the datapath, to a pcapng file")
    .addOption(new Option("-w, --write <file>", "the pcapng file to write (replaced); required"))
    .addOption(new Option("--stage <stage>", `where to capture, repeatable: ${CAPTURE_STAGES.join(", ")} (default both)`).argParser(collect))
    .addOption(new Option("--address <ip|cidr>", "only packets with this source or destination"))
    .addOption(new Option("--port <n>", "only packets with this source or destination port"))
    .addOption(new Option("--rate <n>", "packets per second at most (default 10000); the rest are counted as missed"))
    .addOption(new Option("--snaplen <n>", "bytes kept of each packet (default 262144)"))
    .addOption(new Option("--count <n>", "stop after this many packets"))
    .addOption(new Option("--seconds <n>", "stop after this many seconds"))
    .addOption(new Option("--socket <path>", `the agent's API socket (default ${DEFAULT_AGENT_SOCKET})`));
  example(cmd, "sudo membrane capture -w /tmp/fwd.pcapng --count 100", "sudo membrane capture -w drops.pcapng --stage after --address 10.92.0.0/24 --port 7001 --seconds 10");
  cmd.action(async (f: CaptureFlags, self: Command) => {
    const io = outputOf(self);
    const file = f.write;
    if (file === undefined) throw new InvalidInputError("capture: -w/--write <file> is required (the pcapng file to write)");
    const q = new URLSearchParams();
    for (const s of f.stage ?? []) q.append("stage", s);
    const add = (k: string, v: number | string | undefined) => v !== undefined && q.set(k, String(v));
    add("port", integerArg("port", f.port, 0, 65535));
    add("rate", integerArg("rate", f.rate, 1, 1_000_000));
    add("snaplen", integerArg("snaplen", f.snaplen, 20, 262144));
    add("address", f.address);
    const count = integerArg("count", f.count, 1, Number.MAX_SAFE_INTEGER);
    const stop = streamStop(f.seconds);
    let fd: number | undefined;
    let written = 0;
    let missed = 0;
    try {
      await streamAgent(f.socket ?? DEFAULT_AGENT_SOCKET, `/v1/capture?${q}`, (v) => {
        if (stop.signal.aborted) return;
        const m = v as CapturedPacketJson & { capturing?: unknown; missed?: number; error?: string };
        if (m.error !== undefined) throw new InvalidInputError(`capture: ${m.error}`);
        if (m.capturing !== undefined) {
          // Opened only once the agent accepted the capture: a refused one leaves no file behind.
          fd = openSync(file, "w");
          writeSync(fd, pcapngHeader(INTERFACES));
          io.err(`membrane capture: writing to ${file} (${JSON.stringify(m.capturing)}); Ctrl-C to stop`);
          return;
        }
        if (m.missed !== undefined) {
          missed += m.missed;
          return;
        }
        const iface = (m.stage === "before" ? 0 : 1) + (m.link === "ethernet" ? 2 : 0);
        const comment = m.verdict === "drop" ? `drop ${m.reason}` : m.verdict;
        writeSync(fd!, pcapngPacket(iface, BigInt(m.timeNs), Buffer.from(m.data, "base64"), m.length, comment));
        written++;
        if (count !== undefined && written >= count) stop.stop();
      }, stop.signal);
    } finally {
      stop.dispose();
      if (fd !== undefined) closeSync(fd);
    }
    io.out(`membrane capture: ${written} packets written to ${file}${missed ? `; ${missed} missed (rate cap)` : ""}`);
  });
}
