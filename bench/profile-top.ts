/**
 * `node dist/bench/profile-top.js <file.cpuprofile> [count]`: the frames with
 * the most self time in a V8 CPU profile (node --cpu-prof), as a table:
 * share of all samples, function, file:line, then the samples by kind (Wasm,
 * garbage collector, idle, JavaScript). For reading a forwarder worker's
 * profile without a browser (docs/forwarder.md shows one). V8 samples a
 * native call made through koffi (the TUN I/O, poll) as the JavaScript
 * frame that makes it: its syscalls are inside that frame's self time.
 */
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { num, printTable } from "./report.js";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

function main(): void {
  const [file, count = "20"] = process.argv.slice(2);
  if (!file) {
    console.error("usage: node dist/bench/profile-top.js <file.cpuprofile> [count]");
    process.exitCode = 2;
    return;
  }
  const profile = JSON.parse(readFileSync(file, "utf8")) as { nodes: ProfileNode[] };
  const self = new Map<string, number>();
  const kinds = new Map<string, number>();
  let total = 0;
  for (const n of profile.nodes) {
    const hits = n.hitCount ?? 0;
    total += hits;
    const f = n.callFrame;
    const kind = f.functionName.startsWith("wasm-function") || f.url.startsWith("wasm:") ? "Wasm"
      : f.functionName === "(garbage collector)" ? "garbage collector"
      : f.functionName === "(idle)" || f.functionName === "(program)" ? "idle / program"
      : "JavaScript (and the native calls it makes)";
    kinds.set(kind, (kinds.get(kind) ?? 0) + hits);
    const where = f.url ? `${basename(f.url)}:${f.lineNumber + 1}` : "";
    const key = `${f.functionName || "(anonymous)"}\t${where}`;
    self.set(key, (self.get(key) ?? 0) + hits);
  }
  const rows = [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, Number(count))
    .map(([key, hits]) => {
      const [fn, where] = key.split("\t");
      return { "self %": `${num((100 * hits) / Math.max(1, total), 1)}%`, function: fn!, where: where! };
    });
  printTable(`${basename(file)}: ${total} samples, top frames by self time`, rows);
  printTable("By kind", [...kinds.entries()].sort((a, b) => b[1] - a[1]).map(([kind, hits]) => ({ "self %": `${num((100 * hits) / Math.max(1, total), 1)}%`, kind })));
}

main();
