// The README's promises: the library example is the one that runs, and the
// commands it shows exist.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { expect, test } from "vitest";
import { packageRoot } from "../host/package-root.js";

const root = packageRoot();
const readme = readFileSync(join(root, "README.md"), "utf8");

test("the README's library example is examples/library.mjs, and it runs", () => {
  const example = readFileSync(join(root, "examples/library.mjs"), "utf8");
  expect(readme).toContain(example.trim());
  const out = execFileSync(process.execPath, [join(root, "examples/library.mjs")], { cwd: root, encoding: "utf8" });
  expect(out).toContain("SYN      pass new egress");
  expect(out).toContain("SYN-ACK  pass reply ingress");
  expect(out).toContain("tcp4 10.0.1.10:40000 -> 10.0.2.20:80 expires in 21600 s");
});

test("the README's two commands are near the top and are npm scripts", () => {
  const top = readme.split("\n").slice(0, 30).join("\n");
  expect(top).toContain("npm ci && npm start");
  expect(top).toContain("npm test");
  const scripts = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).scripts;
  expect(scripts.start).toBeDefined();
  expect(scripts.test).toBeDefined();
});
