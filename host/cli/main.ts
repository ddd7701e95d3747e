#!/usr/bin/env node
/**
 * The `membrane` command: builds the commander program from the command
 * groups, runs it, and turns every error into a message and an exit code
 * (output.ts). A group is a file exporting `register<Group>(program)`; to add
 * one, import it here and call it in buildProgram(), before finishTree().
 */
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Command, CommanderError } from "commander";
import { MembraneError } from "../errors.js";
import { EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK, OutputClosedError, processOutput, type Output } from "../format/output.js";
import { attachOutput, exitCodeOf, finishTree } from "./command.js";
import { registerReplay } from "./replay.js";
import { registerBpf } from "./bpf.js";
import { registerService } from "./lb.js";
import { registerAgent } from "./agent.js";
import { registerStatus } from "./status.js";
import { registerDemo } from "./demo.js";
import { registerEndpoint, registerIdentity, registerPolicy } from "./policy.js";
import { registerKvstore } from "./kvstore.js";
import { registerApply } from "./apply.js";
import { registerOperator } from "./operator.js";
import { registerCluster } from "./cluster.js";
import { registerMonitor } from "./monitor.js";
import { registerCapture } from "./capture.js";
import { registerSim } from "./sim.js";
import { registerEncrypt } from "./encrypt.js";
import { outputOf } from "./command.js";

/** The whole command tree, printing through `io`. A new program per run: tests call run() many times. */
export function buildProgram(io: Output = processOutput): Command {
  const program = new Command("membrane")
    .description("a Cilium-style datapath (conntrack, NAT, load-balancing and policy in Wasm, checked against kernel BPF)")
    .usage("<command> [options]")
    .addHelpText("after", "\nExamples:\n  $ membrane replay examples/sample.pcap\n  $ membrane replay --help\n\nExit codes: 0 done, 1 failed while running, 2 bad input (arguments, files).\nSet MEMBRANE_DEBUG=1 to print the stack of an unexpected error.");
  attachOutput(program, io);
  registerReplay(program);
  registerAgent(program);
  registerStatus(program);
  registerDemo(program);
  registerService(program);
  registerPolicy(program);
  registerIdentity(program);
  registerEndpoint(program);
  registerBpf(program);
  registerKvstore(program, { output: outputOf });
  registerApply(program);
  registerOperator(program);
  registerCluster(program);
  registerMonitor(program);
  registerCapture(program);
  registerSim(program);
  registerEncrypt(program);
  finishTree(program, io);
  return program;
}

/** Runs `membrane <argv...>`; resolves to the exit code (never throws, never exits the process). */
export async function run(argv: string[], io: Output = processOutput): Promise<number> {
  const program = buildProgram(io);
  try {
    await program.parseAsync(argv, { from: "user" });
    return exitCodeOf(program);
  } catch (err) {
    return exitCodeFor(err, io);
  }
}

/** The top-level handler: a message for people, the stack only with MEMBRANE_DEBUG=1, an exit code by kind. */
function exitCodeFor(err: unknown, io: Output): number {
  // The reader went away (`membrane replay x | head`): nothing more to say to anyone.
  if (err instanceof OutputClosedError) return EXIT_OK;
  if (err instanceof CommanderError) {
    // Already printed by commander (help, or the error with the command's usage).
    // Help asked for (--help, `membrane help x`) ends 0; help shown for a missing command, and every usage error, 2.
    if (err.exitCode === 0) return EXIT_OK;
    return EXIT_BAD_INPUT;
  }
  const debug = !!process.env.MEMBRANE_DEBUG;
  if (err instanceof MembraneError) {
    io.err(`membrane: ${err.message}`);
    if (debug) io.err(err.stack ?? "");
    return err.code === "INVALID_INPUT" ? EXIT_BAD_INPUT : EXIT_FAILURE;
  }
  const message = err instanceof Error ? err.message : String(err);
  io.err(`membrane: unexpected error: ${message.split("\n")[0]}`);
  io.err(debug ? (err as Error)?.stack ?? "" : "(run with MEMBRANE_DEBUG=1 for the stack)");
  return EXIT_FAILURE;
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
