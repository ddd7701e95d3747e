/**
 * `membrane operator --watch-dir`: a directory of manifest files followed as
 * desired state (a file with a bad document applies nothing; a removed file
 * removes its objects), and the operator command's help and option errors.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { Command } from "commander";
import { afterAll, beforeAll, expect, it } from "vitest";
import { registerOperator } from "../../host/cli/operator.js";
import { keys } from "../../host/kvstore/keys.js";
import { openKvStore } from "../../host/kvstore/open.js";
import type { KvStore } from "../../host/kvstore/store.js";
import { manifestKey } from "../../host/operator/manifest-store.js";
import { runOperator } from "../../host/operator/operator.js";
import { describeIf } from "../support/describe-if.js";
import { backends, FakeAgent, manifestDir, NODES, pods } from "./support.js";
import { waitFor } from "../support/wait-for.js";

async function operatorCli(args: string[]): Promise<{ help: string; error?: Error }> {
  let help = "";
  const program = new Command("membrane").exitOverride();
  registerOperator(program, { signal: AbortSignal.abort(), output: () => ({ out: () => undefined, err: () => undefined }) });
  for (const c of [program, ...program.commands]) c.exitOverride().configureOutput({ writeOut: (s) => (help += s), writeErr: () => undefined });
  try {
    await program.parseAsync(["node", "membrane", ...args]);
  } catch (e) {
    if ((e as { code?: string }).code !== "commander.helpDisplayed") return { help, error: e as Error };
  }
  return { help };
}

it("membrane operator --help has an example; a bad --lease-ttl is refused naming the option", async () => {
  const { help } = await operatorCli(["operator", "--help"]);
  expect(help).toMatch(/Usage: membrane operator/);
  expect(help).toMatch(/--lease-ttl <seconds>/);
  expect(help).toMatch(/--watch-dir <dir>/);
  expect(help).toMatch(/\$ membrane operator --kvstore/);
  const bad = await operatorCli(["operator", "--lease-ttl", "0"]);
  expect(bad.error?.message).toMatch(/--lease-ttl: expected a number >= 1, got "0"/);
  expect((await operatorCli(["operator", "--lease-ttl", "1.5"])).error?.message).toMatch(/--lease-ttl: whole seconds/);
});

for (const backend of backends()) {
  describeIf(`operator --watch-dir on ${backend.name}`, backend.missing, () => {
    let store: KvStore;
    let files: ReturnType<typeof manifestDir>;
    const stop = new AbortController();
    let running: Promise<void>;
    const log: string[] = [];

    beforeAll(async () => {
      store = await openKvStore(await backend.setup());
      files = manifestDir();
      files.write("nodes.yaml", NODES);
      files.write("pods.yaml", pods());
      const agent = await FakeAgent.start(store, "node-a");
      await agent.allocate("shop", { app: "web" });
      await agent.allocate("shop", { app: "front" });
      running = runOperator(store, { leaseTtlSeconds: 5, identityGcIntervalMs: 0, watchDir: files.dir, signal: stop.signal, log: (l) => log.push(l) });
    }, 60_000);

    afterAll(async () => {
      stop.abort();
      await running;
      await store?.close();
      files?.remove();
      await backend.teardown();
    });

    it("follows the directory: files applied, a bad file applies nothing, a removed file removes its objects", async () => {
      await waitFor("web-1 and front-1 records", async () => ((await store.list(keys.endpoints())).kvs.length === 2 ? true : undefined));
      const extra = files.write("zz-extra.yaml", `
apiVersion: v1
kind: Pod
metadata: { name: extra, namespace: shop, labels: { app: web } }
spec: { nodeName: node-a }
status: { podIP: 10.1.0.50 }
---
apiVersion: v1
kind: Pod
metadata: { name: broken, namespace: shop }
spec: { nodeName: node-a }
status: { podIP: nope }
`);
      await waitFor("the bad file reported", async () => (log.some((l) => /zz-extra\.yaml: document 2 \(Pod shop\/broken\): status\.podIP/.test(l)) ? true : undefined));
      const extraKey = manifestKey({ kind: "Pod", namespace: "shop", name: "extra", labels: {}, nodeName: "node-a", ips: [] });
      expect(await store.get(extraKey)).toBeUndefined();

      rmSync(extra);
      rmSync(join(files.dir, "pods.yaml"));
      await waitFor("pod records gone", async () => ((await store.list(keys.endpoints())).kvs.length === 0 ? true : undefined));
      expect((await store.list("membrane/manifests/v1/pods/")).kvs).toEqual([]);
      expect(await store.get(keys.node("default", "node-a"))).toBeDefined();
    });
  });
}
