/**
 * Whether the kernel tests can run here: root, bpf(2), the compiled object.
 * Outside CI they skip with the reason; in CI (CI=true) a missing piece fails,
 * because it means an install step is missing.
 */
import { existsSync } from "node:fs";
import { bpfObjectPath } from "../../host/tools/build-bpf.js";

export function kernelUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "kernel tests need root (bpf(2), BPF_PROG_TEST_RUN)";
  if (!existsSync(bpfObjectPath("bpf_test"))) return `${bpfObjectPath("bpf_test")} is missing: install clang and libbpf-dev, run npm run build`;
  return undefined;
}

export const KERNEL_SKIP = (() => {
  const reason = kernelUnavailable();
  if (reason && process.env.CI === "true") throw new Error(`kernel tests cannot run in CI: ${reason}`);
  if (reason) console.warn(`skipping kernel tests: ${reason}`);
  return reason !== undefined;
})();
