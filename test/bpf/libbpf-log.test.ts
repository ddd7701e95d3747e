// Routing of libbpf's print callback: captured per call (so errors can carry
// the log), silent otherwise unless MEMBRANE_LIBBPF_LOG asks for stderr.
import { afterEach, describe, expect, it, vi } from "vitest";
import { captureLibbpfLog, emitLibbpfMessage, libbpfLevelWanted } from "../../host/bpf/libbpf-log.js";

describe("libbpf log routing", () => {
  const saved = process.env.MEMBRANE_LIBBPF_LOG;
  afterEach(() => {
    if (saved === undefined) delete process.env.MEMBRANE_LIBBPF_LOG;
    else process.env.MEMBRANE_LIBBPF_LOG = saved;
    vi.restoreAllMocks();
  });

  it("collects messages into the active captures, outer ones included", () => {
    const outer = captureLibbpfLog((o) => {
      emitLibbpfMessage("warn", "libbpf: one\n");
      const inner = captureLibbpfLog((i) => {
        emitLibbpfMessage("info", "libbpf: two\n");
        return i;
      });
      expect(inner.text()).toBe("libbpf: two\n");
      return o;
    });
    expect(outer.text()).toBe("libbpf: one\nlibbpf: two\n");
    expect(outer.text("warn")).toBe("libbpf: one\n");
  });

  it("ends a capture even when the call throws", () => {
    const write = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    delete process.env.MEMBRANE_LIBBPF_LOG;
    expect(() =>
      captureLibbpfLog(() => {
        throw new Error("boom");
      }),
    ).toThrow("boom");
    emitLibbpfMessage("warn", "libbpf: after\n");
    expect(write).not.toHaveBeenCalled();
  });

  it("writes to stderr outside captures only when MEMBRANE_LIBBPF_LOG is set", () => {
    const write = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    delete process.env.MEMBRANE_LIBBPF_LOG;
    emitLibbpfMessage("warn", "libbpf: dropped\n");
    expect(write).not.toHaveBeenCalled();
    process.env.MEMBRANE_LIBBPF_LOG = "1";
    emitLibbpfMessage("warn", "libbpf: shown\n");
    emitLibbpfMessage("debug", "libbpf: too chatty\n");
    expect(write.mock.calls.map((c) => c[0])).toEqual(["libbpf: shown\n"]);
  });

  it("formats debug messages only when asked for", () => {
    delete process.env.MEMBRANE_LIBBPF_LOG;
    expect([libbpfLevelWanted("warn"), libbpfLevelWanted("info"), libbpfLevelWanted("debug")]).toEqual([true, true, false]);
    process.env.MEMBRANE_LIBBPF_LOG = "debug";
    expect(libbpfLevelWanted("debug")).toBe(true);
  });
});
