/**
 * `membrane operator ...` as its own process for the failover test: the
 * real command (registerOperator through commander), stdout line by line.
 * argv: the command line after `membrane`.
 */
import { Command } from "commander";
import { registerOperator } from "../../host/cli/operator.js";

const program = new Command("membrane");
registerOperator(program);
try {
  await program.parseAsync(["node", "membrane", ...process.argv.slice(2)]);
  process.exit(0);
} catch (err) {
  process.stderr.write(`${(err as { code?: string }).code ?? "ERROR"}: ${(err as Error).message}\n`);
  process.exit(1);
}
