/**
 * `membrane <argv>` run in-process (host/cli/main.ts's run), its output
 * captured: the exit code, stdout and stderr as text, and stdout's lines as
 * the command wrote them.
 */
import { run } from "../../host/cli/main.js";

export async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string; lines: string[] }> {
  const out: string[] = [], err: string[] = [];
  const code = await run(argv, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join("\n"), err: err.join("\n"), lines: out };
}
