/**
 * `membrane monitor`: drop, trace and policy-verdict events live from the
 * running agent (its API socket streams them), one line per event, or JSON
 * lines with --json. Filters and sampling are applied by the agent; the
 * rate cap bounds what monitoring can cost the forwarder, and what it
 * refused is reported as lost.
 */
import { Command, Option } from "commander";
import { streamAgent } from "../api/stream-client.js";
import { InvalidInputError } from "../errors.js";
import type { MonitorEventView } from "../monitor/event.js";
import { formatMonitorEvent } from "../monitor/format.js";
import { MONITOR_TYPES, DEFAULT_MONITOR_SETTINGS } from "../monitor/settings.js";
import { DEFAULT_AGENT_SOCKET } from "./cluster.js";
import { example, integerArg, jsonOption, outputOf } from "./command.js";
import { streamStop } from "./stream-stop.js";

const collect = (value: string, previous: string[] = []) => [...previous, value];

interface MonitorFlags {
  type?: string[];
  endpoint?: string;
  reason?: string;
  address?: string;
  port?: string;
  sample?: string;
  rate?: string;
  count?: string;
  seconds?: string;
  socket?: string;
  json: boolean;
}

/** The query for GET /v1/monitor; the agent checks it whole (the numbers are checked here too, to name the flag). */
export function monitorQuery(f: MonitorFlags): string {
  const q = new URLSearchParams();
  for (const t of f.type ?? []) q.append("type", t);
  const num = (flag: string, v: string | undefined, min: number, max: number) => integerArg(flag, v, min, max);
  const add = (k: string, v: number | string | undefined) => v !== undefined && q.set(k, String(v));
  add("endpoint", num("endpoint", f.endpoint, 0, 65535));
  add("port", num("port", f.port, 0, 65535));
  add("sample", num("sample", f.sample, 1, 1_000_000));
  add("rate", num("rate", f.rate, 1, 10_000_000));
  add("reason", f.reason);
  add("address", f.address);
  return `/v1/monitor?${q}`;
}

export function registerMonitor(program: Command): void {
  const cmd = program
    .command("monitor")
    .description("show drop, trace and policy-verdict events live from the running agent")
    .addOption(new Option("--type <kind>", `event kind, repeatable: ${MONITOR_TYPES.join(", ")} (default: ${DEFAULT_MONITOR_SETTINGS.types.join(", ")})`).argParser(collect))
    .addOption(new Option("--endpoint <id>", "only events of this local endpoint"))
    .addOption(new Option("--reason <reason>", 'only drops for this reason: DROP_POLICY or its text ("Policy denied")'))
    .addOption(new Option("--address <ip|cidr>", "only packets with this source or destination"))
    .addOption(new Option("--port <n>", "only packets with this source or destination port"))
    .addOption(new Option("--sample <n>", "trace events: one in n (default 1: all)"))
    .addOption(new Option("--rate <n>", `events per second at most; the rest are counted as lost (default ${DEFAULT_MONITOR_SETTINGS.ratePerSecond})`))
    .addOption(new Option("--count <n>", "stop after this many events"))
    .addOption(new Option("--seconds <n>", "stop after this many seconds"))
    .addOption(new Option("--socket <path>", `the agent's API socket (default ${DEFAULT_AGENT_SOCKET})`));
  jsonOption(cmd, "one JSON object per event");
  example(cmd, "sudo membrane monitor --type drop", "sudo membrane monitor --type drop --type policy-verdict --endpoint 1 --json", "sudo membrane monitor --type trace --sample 100 --address 10.92.0.0/24 --port 80");
  cmd.action(async (f: MonitorFlags, self: Command) => {
    const io = outputOf(self);
    const path = monitorQuery(f);
    const count = integerArg("count", f.count, 1, Number.MAX_SAFE_INTEGER);
    const stop = streamStop(f.seconds);
    let shown = 0;
    try {
      await streamAgent(f.socket ?? DEFAULT_AGENT_SOCKET, path, (v) => {
        if (stop.signal.aborted) return;
        const m = v as MonitorEventView & { lost?: number; monitoring?: unknown; error?: string };
        if (m.monitoring !== undefined) {
          io.err(`membrane monitor: listening (${JSON.stringify(m.monitoring)}); Ctrl-C to stop`);
          return;
        }
        if (m.error !== undefined) throw new InvalidInputError(`monitor: ${m.error}`);
        if (m.lost !== undefined) {
          if (f.json) io.out(JSON.stringify({ lost: m.lost }));
          else io.err(`membrane monitor: ${m.lost} events lost (rate cap or full ring)`);
          return;
        }
        io.out(f.json ? JSON.stringify(m) : formatMonitorEvent(m));
        if (count !== undefined && ++shown >= count) stop.stop();
      }, stop.signal);
    } finally {
      stop.dispose();
    }
  });
}
