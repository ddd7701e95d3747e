// Helper probes against the running kernel: bpf_loop (5.17) is there on the
// kernels membrane is built on; a helper id no kernel has is reported as
// NotSupported naming the helper, its minimum kernel and this kernel.
import { release } from "node:os";
import { expect, test } from "vitest";
import { HELPERS, helperSupported, requireHelper } from "../../host/bpf/helper-probe.js";
import { NotSupportedError } from "../../host/errors.js";
import { templateUnavailable } from "../kernel/template-env.js";
import { describeIf } from "../support/describe-if.js";

describeIf("BPF helper probes", templateUnavailable(), () => {
  test("bpf_loop is found on this kernel (Linux >= 5.17)", () => {
    const [major, minor] = release().split(".").map(Number) as [number, number];
    expect(helperSupported(HELPERS.loop)).toBe(major > 5 || (major === 5 && minor >= 17));
  });

  test("a missing helper is NotSupported with the helper, the minimum kernel and this kernel", () => {
    const future = { id: 4000, name: "bpf_from_the_future", since: "99.1", usedBy: "a test" };
    expect(helperSupported(future)).toBe(false);
    expect(() => requireHelper("load it", future)).toThrow(NotSupportedError);
    expect(() => requireHelper("load it", future)).toThrow(new RegExp(`load it: this kernel \\(${release().replace(/[.+]/g, "\\$&")}\\) lacks the BPF helper bpf_from_the_future, which a test needs: Linux 99\\.1`));
  });
});
