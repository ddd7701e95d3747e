/**
 * Facts about the machine a run happened on. Benchmark numbers are meaningless
 * without them: printed first, and stored with the results so two runs can be
 * compared only when they came from comparable machines.
 */
import os from "node:os";

export interface MachineFacts {
  node: string;
  v8: string;
  platform: string;
  cpu: string;
  cores: number;
  memoryGiB: number;
}

export function machineFacts(): MachineFacts {
  const cpus = os.cpus();
  return {
    node: process.version,
    v8: process.versions.v8,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpu: cpus[0]?.model.trim() ?? "unknown",
    cores: cpus.length,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
  };
}

export function printMachineFacts(m: MachineFacts): void {
  console.log(`node ${m.node} (V8 ${m.v8}), ${m.platform}`);
  console.log(`CPU: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB RAM`);
}
