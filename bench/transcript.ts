/**
 * A bench run's printed output, kept as Markdown (bench/results/<name>.md):
 * one fenced block per suite under a heading with the date, the machine and
 * the command. docs/benchmarks.md is assembled from these files, so every
 * figure there is text a run printed, not numbers copied by hand.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { packageRoot } from "../host/package-root.js";
import type { MachineFacts } from "./machine.js";

export class Transcript {
  private readonly sections: { title: string; lines: string[] }[] = [];
  private readonly original = console.log;

  constructor(
    private readonly command: string,
    private readonly machine: MachineFacts,
  ) {
    console.log = (...args: unknown[]) => {
      this.original(...args);
      this.sections.at(-1)?.lines.push(args.map(String).join(" "));
    };
  }

  /** Output from here on belongs to section `title`. */
  section(title: string): void {
    this.sections.push({ title, lines: [] });
  }

  /** Restores console.log and writes bench/results/<name>.md; returns its path. */
  write(name: string): string {
    console.log = this.original;
    const m = this.machine;
    const head = [
      `# \`${this.command}\`, ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC`,
      "",
      `Node ${m.node}, ${m.platform}, ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB.`,
      "",
    ];
    const body = this.sections.flatMap((s) => [`## ${s.title}`, "", "```text", ...trimBlank(s.lines), "```", ""]);
    const dir = join(packageRoot(), "bench", "results");
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `${name}.md`);
    writeFileSync(file, [...head, ...body].join("\n"));
    return file;
  }
}

function trimBlank(lines: string[]): string[] {
  const text = lines.join("\n").replace(/^\n+|\n+$/g, "");
  return text === "" ? [] : text.split("\n");
}
