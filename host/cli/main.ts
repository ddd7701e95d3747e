#!/usr/bin/env node
/** The `membrane` command. */
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { MembraneError } from "../errors.js";
import { replay } from "./replay.js";
import { bpfCtList } from "./bpf-ct.js";
import { bpfEndpointCommand, bpfPolicyCommand } from "./policy-tables.js";
import { runBpfNat } from "./bpf-nat.js";
import { loadAgentConfig, parseSnapshotInterval, runAgent } from "../agent/agent.js";
import { parseRouteRule, parseRouteTable } from "../agent/routing.js";
import { DEFAULT_STATE_DIR } from "../agent/status-file.js";
import { status } from "./status.js";
import { join } from "node:path";
import { packageRoot } from "../package-root.js";
import { runDemo } from "../demo/demo.js";
import { EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK, processOutput, type Output } from "./output.js";
import { endpointCommand, identityCommand, policyCommand } from "./policy.js";
import { bpfLbCommand, serviceCommand } from "./lb.js";

const USAGE = `membrane: a Cilium-style datapath (conntrack in Wasm, checked against kernel BPF)

Usage:
  membrane replay <capture> [options]   run a pcap/pcapng capture through the datapath
  membrane bpf ct list [options]        the kernel datapath's conntrack maps (pinned)
  membrane bpf policy get <endpoint>    an endpoint's policy entries in the kernel map (pinned; --pin-dir, --json)
  membrane bpf endpoint list            local endpoints in the kernel maps (pinned; --pin-dir, --json)
  membrane bpf nat list|flush [options] the kernel datapath's NAT maps (pinned): --pin-dir, --table nat4|nat6, --json (list)
  membrane bpf lb list                  the kernel's LB maps: services, slots, backends, rev-NAT, Maglev rows (pinned; --pin-dir, --json)
  membrane service list --config <file> the state file's services: frontends, algorithm, backend ids and weights, rev-NAT index (--json)
  membrane agent --datapath tun [opts]  forward traffic routed into a TUN device (root)
  membrane status [--json]              what the running agent reports
  membrane demo [--seconds N] [--json]  live: the TUN forwarder between network namespaces (root; else the replay)
  membrane policy|identity|endpoint ... policy engine on a state file (membrane policy --help)

replay options:
  --json                 JSON lines instead of tables
  --out <file>           write the packets that pass, as rewritten, to a pcap file
  --config <file>        state file (JSON): datapath options (conntrack, nat, lb, policy sizes), services, endpoints and policies
  --direction <d>        auto (default), egress or ingress: the packets' direction
  --gc <mode>            adaptive (default), fixed or off: conntrack GC on the capture clock
  --summary              no per-packet lines, only the tables and counters
  --engine <e>           wasm (default) or bpf: the kernel program via BPF_PROG_TEST_RUN (root)

agent options:
  --datapath tun         the userspace forwarder (the only datapath the agent runs yet)
  --config <file>        state file (JSON), as for replay
  --device <name>        TUN device name (default mbr0)
  --mtu <n>              device MTU (default 1500)
  --offloads             TSO/USO and checksum offload on the device (virtio-net header)
  --route <cidr>         route this prefix into the device (repeatable)
  --route-table <n>      put those routes in table n instead of main (policy routing)
  --route-rule <sel>     ip rule selector sending traffic to --route-table, e.g. "iif lxc-pod1 pref 100"
                         (repeatable; added at start, removed at stop)
  --state-dir <dir>      status file, lock and conntrack snapshot (default /run/membrane; created 0700)
  --snapshot-interval <s> seconds between conntrack snapshots while running (default 10)
  --discard-snapshot     set the last run's conntrack snapshot aside and start without it

bpf ct list options:
  --pin-dir <dir>        where the maps are pinned (default /sys/fs/bpf/membrane, or $MEMBRANE_BPFFS)
  --table <t>            tcp4, any4, tcp6 or any6 (default: all)
  --json                 JSON lines
  -h, --help             this text
`;

function parseDirection(v: string | undefined): "auto" | "egress" | "ingress" {
  if (v === undefined) return "auto";
  if (v === "auto" || v === "egress" || v === "ingress") return v;
  throw new MembraneError("INVALID_INPUT", `--direction: expected auto, egress or ingress, got "${v}"`);
}

function parseEngine(v: string | undefined): "wasm" | "bpf" {
  if (v === undefined) return "wasm";
  if (v === "wasm" || v === "bpf") return v;
  throw new MembraneError("INVALID_INPUT", `--engine: expected wasm or bpf, got "${v}"`);
}

function parseGc(v: string | undefined): "adaptive" | "fixed" | "off" {
  if (v === undefined) return "adaptive";
  if (v === "adaptive" || v === "fixed" || v === "off") return v;
  throw new MembraneError("INVALID_INPUT", `--gc: expected adaptive, fixed or off, got "${v}"`);
}

export async function run(argv: string[], io: Output = processOutput): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (!command || command === "-h" || command === "--help" || command === "help") {
      io.out(USAGE);
      return command ? EXIT_OK : EXIT_BAD_INPUT;
    }
    if (command === "replay") {
      const { values, positionals } = parseArgs({
        args: rest,
        allowPositionals: true,
        options: {
          json: { type: "boolean", default: false },
          out: { type: "string" },
          config: { type: "string" },
          direction: { type: "string" },
          gc: { type: "string" },
          summary: { type: "boolean", default: false },
          engine: { type: "string" },
          help: { type: "boolean", short: "h", default: false },
        },
      });
      if (values.help) { io.out(USAGE); return EXIT_OK; }
      if (positionals.length !== 1) throw new MembraneError("INVALID_INPUT", `replay: expected one capture file, got ${positionals.length}`);
      await replay({
        input: positionals[0], engine: parseEngine(values.engine), json: values.json, out: values.out, config: values.config,
        direction: parseDirection(values.direction), gc: parseGc(values.gc), summaryOnly: values.summary,
      }, io);
      return EXIT_OK;
    }
    if (command === "agent") {
      const { values, positionals } = parseArgs({
        args: rest, allowPositionals: true,
        options: {
          datapath: { type: "string" }, config: { type: "string" }, device: { type: "string" }, mtu: { type: "string" },
          route: { type: "string", multiple: true }, "state-dir": { type: "string" }, seconds: { type: "string" },
          offloads: { type: "boolean", default: false },
          "route-table": { type: "string" }, "route-rule": { type: "string", multiple: true },
          "snapshot-interval": { type: "string" }, "discard-snapshot": { type: "boolean", default: false },
        },
      });
      if (positionals.length) throw new MembraneError("INVALID_INPUT", `agent: unexpected argument "${positionals[0]}"`);
      if (values.datapath !== "tun") throw new MembraneError("INVALID_INPUT", `agent: --datapath must be "tun" (got ${values.datapath === undefined ? "nothing" : `"${values.datapath}"`})`);
      const mtu = values.mtu === undefined ? undefined : Number(values.mtu);
      if (mtu !== undefined && !(Number.isInteger(mtu) && mtu >= 576 && mtu <= 65535)) throw new MembraneError("INVALID_INPUT", `--mtu: expected 576..65535, got "${values.mtu}"`);
      const seconds = values.seconds === undefined ? undefined : Number(values.seconds);
      if (seconds !== undefined && !(seconds > 0)) throw new MembraneError("INVALID_INPUT", `--seconds: expected a positive number, got "${values.seconds}"`);
      const state = values.config ? loadAgentConfig(values.config) : undefined;
      await runAgent({
        ...state, device: values.device ?? "mbr0", mtu, offloads: values.offloads,
        routes: values.route ?? [], stateDir: values["state-dir"] ?? DEFAULT_STATE_DIR, seconds,
        routeTable: values["route-table"] === undefined ? undefined : parseRouteTable(values["route-table"]),
        routeRules: (values["route-rule"] ?? []).map(parseRouteRule),
        snapshotInterval: values["snapshot-interval"] === undefined ? undefined : parseSnapshotInterval(values["snapshot-interval"]),
        discardSnapshot: values["discard-snapshot"],
      }, io);
      return EXIT_OK;
    }
    if (command === "status") {
      const { values } = parseArgs({ args: rest, options: { "state-dir": { type: "string" }, json: { type: "boolean", default: false } } });
      status({ stateDir: values["state-dir"], json: values.json }, io);
      return EXIT_OK;
    }
    if (command === "demo") {
      const { values, positionals } = parseArgs({
        args: rest, allowPositionals: true,
        options: { seconds: { type: "string" }, json: { type: "boolean", default: false }, offloads: { type: "boolean", default: false } },
      });
      if (positionals.length) throw new MembraneError("INVALID_INPUT", `demo: unexpected argument "${positionals[0]}"`);
      const seconds = values.seconds === undefined ? undefined : Number(values.seconds);
      if (seconds !== undefined && !(seconds > 0 && seconds <= 3600)) throw new MembraneError("INVALID_INPUT", `--seconds: expected 1..3600, got "${values.seconds}"`);
      const r = await runDemo(io, { seconds, json: values.json, offloads: values.offloads });
      if (r.ran) return r.summary.interrupted || r.summary.traffic.every((t) => t.result === "ok") ? EXIT_OK : EXIT_FAILURE;
      io.err(`membrane demo: ${r.reason}; replaying examples/sample.pcap instead`);
      await replay({
        input: join(packageRoot(), "examples/sample.pcap"), engine: "wasm", json: values.json,
        direction: "auto", gc: "adaptive", summaryOnly: false,
      }, io);
      return EXIT_OK;
    }
    if (command === "bpf" && rest[0] === "endpoint") return bpfEndpointCommand(rest.slice(1), io);
    if (command === "bpf" && rest[0] === "policy") return bpfPolicyCommand(rest.slice(1), io);
    if (command === "bpf" && rest[0] === "lb") return bpfLbCommand(rest.slice(1), io);
    if (command === "service") return serviceCommand(rest, io);
    if (command === "policy") return await policyCommand(rest, io);
    if (command === "identity") return await identityCommand(rest, io);
    if (command === "endpoint") return await endpointCommand(rest, io);
    if (command === "bpf") {
      const [noun, verb, ...args] = rest;
      if (noun === "nat") { runBpfNat(verb, args, io); return EXIT_OK; }
      if (noun !== "ct" || verb !== "list") {
        throw new MembraneError("INVALID_INPUT", `bpf: expected "bpf ct list", "bpf nat list|flush", "bpf lb list", "bpf policy get" or "bpf endpoint list", got "bpf ${[noun, verb].filter(Boolean).join(" ")}"`);
      }
      const { values, positionals } = parseArgs({
        args, allowPositionals: true,
        options: { "pin-dir": { type: "string" }, table: { type: "string" }, json: { type: "boolean", default: false } },
      });
      if (positionals.length) throw new MembraneError("INVALID_INPUT", `bpf ct list: unexpected argument "${positionals[0]}"`);
      bpfCtList({ pinDir: values["pin-dir"], table: values.table, json: values.json }, io);
      return EXIT_OK;
    }
    throw new MembraneError("INVALID_INPUT", `unknown command "${command}" (try: membrane --help)`);
  } catch (err) {
    const argError = (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS");
    io.err(`membrane: ${(err as Error).message}`);
    if (argError || (err instanceof MembraneError && err.code === "INVALID_INPUT")) return EXIT_BAD_INPUT;
    if (!(err instanceof MembraneError)) io.err((err as Error).stack ?? "");
    return EXIT_FAILURE;
  }
}

function invokedDirectly(): boolean {
  try {
    return !!process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

if (invokedDirectly()) {
  run(process.argv.slice(2)).then((code) => { process.exitCode = code; });
}
