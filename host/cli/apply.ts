/**
 * `membrane apply -f FILE|DIR` and `membrane delete -f FILE|DIR`: desired
 * state in Kubernetes' shapes (Node, Pod, Service, EndpointSlice/Endpoints,
 * NetworkPolicy, CiliumNetworkPolicy) into the kvstore, where the operator
 * turns it into slim records. Every file is read and validated before
 * anything is written: one bad document refuses the whole command (exit 2)
 * with a message naming file, document, object and field, and the store is
 * untouched.
 */
import { Command, Option } from "commander";
import { applyManifests, deleteManifests } from "../operator/apply.js";
import { readManifests } from "../operator/manifests/read.js";
import type { Manifest } from "../operator/manifests/kinds.js";
import { InvalidInputError } from "../errors.js";
import { addKvstoreOptions, openKvstoreFromOptions, type KvstoreCliOptions } from "./kvstore-options.js";
import { processOutput, type Output } from "../format/output.js";

interface ApplyCliOptions extends KvstoreCliOptions {
  filename: string[];
}

export interface RegisterApplyOptions {
  output?: (cmd: Command) => Output;
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** All files of every -f, validated together: an object given twice across them is refused too. */
function readAll(paths: string[]): Manifest[] {
  if (paths.length === 0) throw new InvalidInputError("-f/--filename: required (a manifest file or a directory of them)");
  const all: Manifest[] = [];
  for (const p of paths) all.push(...readManifests(p));
  return all;
}

function define(program: Command, name: "apply" | "delete", description: string, example: string): Command {
  const cmd = program
    .command(name)
    .description(description)
    .addOption(new Option("-f, --filename <path>", "a manifest file (YAML or JSON) or a directory of *.yaml, *.yml, *.json; repeatable").argParser(collect));
  addKvstoreOptions(cmd);
  cmd.addHelpText("after", `\nExamples:\n  $ ${example}\n  $ membrane ${name} -f manifests/ --kvstore etcd:127.0.0.1:2379`);
  return cmd;
}

export function registerApply(program: Command, options: RegisterApplyOptions = {}): void {
  const output = options.output ?? (() => processOutput);

  define(program, "apply", "store the objects of manifest files as desired state (the operator writes the records agents read)", "membrane apply -f cluster.yaml")
    .action(async (o: ApplyCliOptions, self: Command) => {
      const io = output(self);
      const manifests = readAll(o.filename ?? []);
      const store = await openKvstoreFromOptions(o);
      try {
        const result = await applyManifests(store, manifests);
        for (const obj of result.objects) io.out(`${obj.id} ${obj.outcome}`);
      } finally {
        await store.close();
      }
    });

  define(program, "delete", "remove the objects of manifest files from the desired state (the operator removes what it derived)", "membrane delete -f pods.yaml")
    .action(async (o: ApplyCliOptions, self: Command) => {
      const io = output(self);
      const manifests = readAll(o.filename ?? []);
      const store = await openKvstoreFromOptions(o);
      try {
        const result = await deleteManifests(store, manifests);
        for (const obj of result.objects) io.out(`${obj.id} ${obj.outcome}`);
      } finally {
        await store.close();
      }
    });
}
