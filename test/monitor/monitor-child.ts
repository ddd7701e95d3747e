// `membrane monitor ...` (dist/) as a child process, for the tests that watch a running agent: its stdout lines, its stderr, its exit.
import { spawn } from "node:child_process";
import { CLI } from "../agent/agent-lab.js";

export type MonitorChild = ReturnType<typeof monitorChild>;

export function monitorChild(args: string[]) {
  const child = spawn(process.execPath, [CLI, "monitor", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  const out: string[] = [];
  let err = "";
  let buf = "";
  child.stdout.setEncoding("utf8").on("data", (c: string) => {
    buf += c;
    const lines = buf.split("\n");
    buf = lines.pop()!;
    out.push(...lines);
  });
  child.stderr.setEncoding("utf8").on("data", (c: string) => (err += c));
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  return { child, out, get err() { return err; }, exited };
}
