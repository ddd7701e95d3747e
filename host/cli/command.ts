/**
 * The pieces every command group uses on top of commander: where a command's
 * output goes (tests capture it, so it hangs off the program rather than being
 * process.stdout), its example, its --json option, and the rules applied to
 * the whole tree once every group is registered (errors to our output, exit
 * codes through our handler, the command's usage after a usage error).
 */
import { Command, Help, Option } from "commander";
import { InvalidInputError } from "../errors.js";
import { EXIT_OK, type Output } from "./output.js";

interface CliContext {
  io: Output;
  /** What run() returns when the action finished without throwing (the demo sets 1 when traffic failed). */
  exitCode: number;
}

const contexts = new WeakMap<Command, CliContext>();

function rootOf(cmd: Command): Command {
  let c = cmd;
  while (c.parent) c = c.parent;
  return c;
}

export function attachOutput(program: Command, io: Output): void {
  contexts.set(program, { io, exitCode: EXIT_OK });
}

function contextOf(cmd: Command): CliContext {
  const ctx = contexts.get(rootOf(cmd));
  if (!ctx) throw new Error(`command "${cmd.name()}" is not part of a program built by host/cli/main.ts`);
  return ctx;
}

/** Where this command prints (the program's Output). */
export function outputOf(cmd: Command): Output {
  return contextOf(cmd).io;
}

/** Sets the exit code run() returns after a successful action (default 0). */
export function setExitCode(cmd: Command, code: number): void {
  contextOf(cmd).exitCode = code;
}

export function exitCodeOf(program: Command): number {
  return contextOf(program).exitCode;
}

/** "membrane bpf ct list": the words that invoke `cmd`. */
export function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return names.join(" ");
}

/**
 * Adds the "Example:" section to a command's help. Every command has one (a
 * test walks the tree and checks); `examples` are full command lines without
 * the leading "$ ".
 */
export function example(cmd: Command, ...examples: string[]): Command {
  return cmd.addHelpText("after", `\nExample${examples.length > 1 ? "s" : ""}:\n${examples.map((e) => `  $ ${e}`).join("\n")}`);
}

/** The `--json` option of a command that prints a table. */
export function jsonOption(cmd: Command, what = "JSON lines instead of tables"): Command {
  return cmd.addOption(new Option("--json", what).default(false));
}

/**
 * A command group (`bpf`, `bpf ct`, `service` ...) with no verb or an unknown
 * one: refused with `message(got)`, exit 2. Without this commander prints
 * "unknown command"; the messages here say what the group expects.
 */
export function refuseOtherVerbs(group: Command, message: (got: string[]) => string): Command {
  return group
    .usage("<command> [options]")
    .argument("[verb]")
    .allowExcessArguments(true)
    .action((_verb: string | undefined, _opts: unknown, cmd: Command) => {
      throw new InvalidInputError(message(cmd.args));
    });
}

/** An integer option value in [min, max], or an error that names the option and what it expected. */
export function integerArg(name: string, value: string | undefined, min: number, max: number, what?: string): number | undefined {
  if (value === undefined) return undefined;
  const n = /^-?\d+$/.test(value.trim()) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new InvalidInputError(`--${name}: expected ${min}..${max}${what ? ` (${what})` : ""}, got "${value}"`);
  return n;
}

/** One of `choices`, or an error naming the option and the choices. */
export function choiceArg<T extends string>(name: string, value: string | undefined, choices: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if ((choices as readonly string[]).includes(value)) return value as T;
  const list = choices.length > 2 ? `${choices.slice(0, -1).join(", ")} or ${choices.at(-1)}` : choices.join(" or ");
  throw new InvalidInputError(`--${name}: expected ${list}, got "${value}"`);
}

/**
 * Applies the program-wide rules to every command of the tree, the ones
 * registered by other groups included: output through `io`, errors prefixed
 * with the command's words instead of "error:", the command's usage line after
 * a usage error, and no process.exit (run() maps commander's errors to exit 2).
 */
export function finishTree(cmd: Command, io: Output): void {
  const path = commandPath(cmd);
  cmd
    .configureOutput({
      writeOut: (s) => io.out(s.replace(/\n$/, "")),
      writeErr: (s) => io.err(s.replace(/\n$/, "")),
      // "membrane replay: Unknown option '--x'" and 'unknown command "x"': the words the CLI printed before commander.
      outputError: (s, write) => write(s.replace(/^error: /, `${path}: `)
        .replace(/: unknown option '/, ": Unknown option '")
        .replace(/: unknown command '([^']*)'/, ': unknown command "$1"')),
    })
    .configureHelp({
      // The usage a command declares (`replay <capture> [options]`), not commander's "[options] [capture]".
      subcommandTerm: (sub) => `${sub.name()} ${sub.usage()}`.trimEnd(),
      // A flag's "(default: false)" says nothing.
      optionDescription: (option) => new Help().optionDescription(option).replace(/ \(default: false\)$/, ""),
    })
    .showHelpAfterError(`Usage: ${path} ${cmd.usage()}\n(run "${path} --help" for its options and an example)`)
    .exitOverride();
  for (const sub of cmd.commands) finishTree(sub, io);
}
