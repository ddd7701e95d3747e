// The C layouts host/bpf/ mirrors, checked against the installed headers:
// libbpf's option structs (koffi descriptions in libbpf.ts), bpf_map_info,
// struct __sk_buff (skb-ctx.ts) and the enum values the host hard-codes. A
// tiny C program prints sizeof/offsetof; a mismatch here would otherwise be
// silent memory corruption. Needs cc, libbpf-dev and libbpf.so.1, not root.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { koffi } from "../../host/sys/ffi.js";
import { libbpf, type LibbpfStructs } from "../../host/bpf/libbpf.js";
import { MAP_UPDATE_FLAGS, MapType } from "../../host/bpf/map.js";
import { ProgType } from "../../host/bpf/program.js";
import { SKB_CTX_OFFSETS, SKB_CTX_SIZE } from "../../host/bpf/skb-ctx.js";
import { BPF_TC_EGRESS, BPF_TC_F_REPLACE, BPF_TC_INGRESS } from "../../host/bpf/tc.js";
import { describeIf, hasCommand, LOADER_FIXTURES, missingLibbpf } from "./kernel-env.js";

interface CLayout {
  size: number;
  fields: Record<string, number>;
}
type Printed = Record<string, CLayout> & { enums: Record<string, number> };

function missing(): string | undefined {
  if (!hasCommand("cc")) return "no host C compiler (cc)";
  if (!existsSync("/usr/include/bpf/libbpf.h")) return "libbpf-dev is not installed (<bpf/libbpf.h> missing)";
  return missingLibbpf();
}

describeIf("C layouts mirrored by host/bpf", missing(), () => {
  let dir: string;
  let printed: Printed;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "membrane-layout-"));
    const exe = join(dir, "layout");
    execFileSync("cc", ["-Wall", "-Werror", "-o", exe, join(LOADER_FIXTURES, "layout.c")], { stdio: "pipe" });
    printed = JSON.parse(execFileSync(exe, { encoding: "utf8" })) as Printed;
  });

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const structs: Array<keyof LibbpfStructs> = [
    "bpf_object_open_opts",
    "bpf_test_run_opts",
    "bpf_tc_hook",
    "bpf_tc_opts",
    "bpf_map_batch_opts",
    "bpf_map_info",
  ];

  it.each(structs)("struct %s has the header's size and field offsets", (name) => {
    const type = libbpf().structs[name];
    const c = printed[name]!;
    expect(type.size).toBe(c.size);
    const offsets = Object.fromEntries(Object.keys(c.fields).map((f) => [f, koffi().offsetof(type, f)]));
    expect(offsets).toEqual(c.fields);
  });

  it("struct __sk_buff offsets and size match skb-ctx.ts", () => {
    const c = printed.__sk_buff!;
    expect(SKB_CTX_SIZE).toBe(c.size);
    expect(SKB_CTX_OFFSETS).toEqual(c.fields);
  });

  it("hard-coded enum values match the headers", () => {
    const e = printed.enums;
    expect(MapType).toEqual({
      HASH: e.BPF_MAP_TYPE_HASH,
      ARRAY: e.BPF_MAP_TYPE_ARRAY,
      PROG_ARRAY: e.BPF_MAP_TYPE_PROG_ARRAY,
      PERCPU_HASH: e.BPF_MAP_TYPE_PERCPU_HASH,
      PERCPU_ARRAY: e.BPF_MAP_TYPE_PERCPU_ARRAY,
      LRU_HASH: e.BPF_MAP_TYPE_LRU_HASH,
      LRU_PERCPU_HASH: e.BPF_MAP_TYPE_LRU_PERCPU_HASH,
      LPM_TRIE: e.BPF_MAP_TYPE_LPM_TRIE,
      PERCPU_CGROUP_STORAGE: e.BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE,
    });
    expect(ProgType).toEqual({
      SOCKET_FILTER: e.BPF_PROG_TYPE_SOCKET_FILTER,
      SCHED_CLS: e.BPF_PROG_TYPE_SCHED_CLS,
      SCHED_ACT: e.BPF_PROG_TYPE_SCHED_ACT,
      XDP: e.BPF_PROG_TYPE_XDP,
      CGROUP_SKB: e.BPF_PROG_TYPE_CGROUP_SKB,
    });
    expect([BPF_TC_INGRESS, BPF_TC_EGRESS, BPF_TC_F_REPLACE]).toEqual([e.BPF_TC_INGRESS, e.BPF_TC_EGRESS, e.BPF_TC_F_REPLACE]);
    expect(MAP_UPDATE_FLAGS).toEqual({ any: e.BPF_ANY, noexist: e.BPF_NOEXIST, exist: e.BPF_EXIST });
  });
});
