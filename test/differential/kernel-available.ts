/**
 * Whether the kernel tests can run here: root, bpf(2), the compiled object.
 * The reason goes to describeIf/testIf (test/support/describe-if.ts): outside
 * CI the suite skips with it; in CI a missing piece fails.
 */
import { existsSync } from "node:fs";
import { bpfObjectPath } from "../../host/tools/build-bpf.js";

export function kernelUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "kernel tests need root (bpf(2), BPF_PROG_TEST_RUN)";
  if (!existsSync(bpfObjectPath("bpf_test"))) return `${bpfObjectPath("bpf_test")} is missing: install clang and libbpf-dev, run npm run build`;
  return undefined;
}
