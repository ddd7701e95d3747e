// The kernel-object layer against the real kernel: load a compiled fixture,
// use its maps, test-run its tc program, pin and reopen a map, see the
// verifier reject a bad program, and attach to tc on a veth pair. Needs root,
// clang and libbpf (see kernel-env.ts for the skip/fail rule).
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { InvalidInputError, MembraneError } from "../../host/errors.js";
import { BPFFS_ROOT, ensurePinDir, isOnBpffs } from "../../host/bpf/bpffs.js";
import { possibleCpus } from "../../host/bpf/cpus.js";
import { BpfSyscallError, BpfVerifierError } from "../../host/bpf/errors.js";
import { BpfMap } from "../../host/bpf/map.js";
import { BpfObject } from "../../host/bpf/object.js";
import { SKB_TEST_RUN_LIMITS } from "../../host/bpf/program.js";
import { decodeSkbCtx, encodeSkbCtx, SKB_CTX_SIZE } from "../../host/bpf/skb-ctx.js";
import { attachTc, interfaceIndex } from "../../host/bpf/tc.js";
import { withNetns } from "../../host/sys/netns/enter.js";
import { compileFixture, describeIf, missingKernelBpf, missingTc, run, runQuietly } from "./kernel-env.js";

const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;

/** struct flow_key of loader.c: saddr, daddr, sport, dport, proto, flags; packed, 14 bytes. */
function flowKey(saddr: number, daddr: number, sport: number, dport: number, proto: number): Uint8Array {
  const key = new Uint8Array(14);
  const v = new DataView(key.buffer);
  v.setUint32(0, saddr, true);
  v.setUint32(4, daddr, true);
  v.setUint16(8, sport, true);
  v.setUint16(10, dport, true);
  key[12] = proto;
  key[13] = 0;
  return key;
}

function u64(n: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, n, true);
  return b;
}

function readU64(b: Uint8Array, off = 0): bigint {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(off, true);
}

/** An Ethernet frame with the given EtherType and a small payload. */
function frame(etherType: number, length = 64): Uint8Array {
  const f = new Uint8Array(length);
  f.set([0x02, 0, 0, 0, 0, 0x01], 0); // dst
  f.set([0x02, 0, 0, 0, 0, 0x02], 6); // src
  f[12] = etherType >> 8;
  f[13] = etherType & 0xff;
  for (let i = 14; i < length; i++) f[i] = i & 0xff;
  return f;
}

/** Sum of a per-CPU u64 counter across CPUs. */
function perCpuSum(map: BpfMap, index: number): bigint {
  const key = new Uint8Array(4);
  new DataView(key.buffer).setUint32(0, index, true);
  const value = map.lookup(key)!;
  return map.perCpuValues(value).reduce((sum, v) => sum + readU64(v), 0n);
}

const tag = `${process.pid}${Math.floor(Math.random() * 1e4)}`;

describeIf("BpfObject on the kernel", missingKernelBpf(), () => {
  let dir: string;
  let loaderElf: Uint8Array;
  let rejectElf: Uint8Array;
  let pinRoot: string;
  const cleanups: Array<() => void> = [];
  const open: BpfObject[] = [];

  const load = (opts: Parameters<typeof BpfObject.load>[1], elf = loaderElf): BpfObject => {
    const obj = BpfObject.load(elf, opts);
    open.push(obj);
    return obj;
  };

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "membrane-loader-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    loaderElf = compileFixture("loader.c", dir);
    rejectElf = compileFixture("reject.c", dir);
    pinRoot = join(BPFFS_ROOT, `membrane-test-${tag}`);
    cleanups.push(() => rmSync(pinRoot, { recursive: true, force: true }));
  });

  afterAll(() => {
    for (const obj of open) obj.close();
    for (const fn of cleanups.reverse()) {
      try {
        fn();
      } catch (err) {
        console.warn(`cleanup failed: ${(err as Error).message}`);
      }
    }
  });

  it("loads maps and programs with their kernel definitions, applying map sizes", () => {
    const obj = load({ name: "loader", mapSizes: { flows: 64 } });
    const flows = obj.map("flows");
    expect([flows.keySize, flows.valueSize, flows.maxEntries, flows.typeName, flows.perCpu]).toEqual([14, 8, 64, "hash", false]);
    expect(flows.fd).toBeGreaterThan(0);
    const counters = obj.map("counters");
    expect([counters.typeName, counters.perCpu, counters.maxEntries]).toEqual(["percpu_array", true, 4]);
    expect(counters.valueBufferSize).toBe(8 * possibleCpus());
    const prog = obj.program("classify");
    expect([prog.sectionName, prog.typeName]).toEqual(["tc", "sched_cls"]);
    expect(prog.fd).toBeGreaterThan(0);
    expect([...obj.programs.keys()]).toEqual(["classify"]);
  });

  it("mapsOnly creates the maps and loads no program (no verifier run: the object the verifier rejects loads)", () => {
    const obj = load({ name: "maps_only", mapSizes: { flows: 32 }, mapsOnly: true });
    expect(obj.map("flows").maxEntries).toBe(32);
    expect(obj.map("flows").fd).toBeGreaterThan(0);
    expect(obj.program("classify").fd).toBeLessThan(0);
    // reject.c's program fails verification; with mapsOnly it is never given to the verifier.
    const rejected = load({ name: "reject_maps", mapsOnly: true }, rejectElf);
    expect([...rejected.programs.values()].every((p) => p.fd < 0)).toBe(true);
  });

  it("refuses a mapSizes entry naming no map, before creating anything", () => {
    expect(() => BpfObject.load(loaderElf, { name: "loader", mapSizes: { flowz: 8 } })).toThrow(/unknown map flowz \(maps: .*flows/);
    expect(() => BpfObject.load(loaderElf, { name: "loader", mapSizes: { flows: 0 } })).toThrow(InvalidInputError);
    expect(() => BpfObject.load(loaderElf, { name: "loader", mapTypes: { flows: "hashh" } })).toThrow(/unknown type "hashh"/);
    expect(() => BpfObject.load(new Uint8Array([1, 2, 3, 4]), { name: "loader" })).toThrow(/not an ELF file/);
  });

  it("overrides map types by libbpf name before creating the maps", () => {
    const obj = load({ name: "loader", mapTypes: { flows: "lru_hash" }, mapSizes: { flows: 32 } });
    expect([obj.map("flows").typeName, obj.map("flows").maxEntries]).toEqual(["lru_hash", 32]);
    const flows = obj.map("flows");
    flows.update(flowKey(1, 2, 3, 4, 6), u64(1n));
    expect(readU64(flows.lookup(flowKey(1, 2, 3, 4, 6))!)).toBe(1n);
  });

  it("updates, looks up, deletes and iterates a hash map with a packed 14-byte key", () => {
    const flows = load({ name: "loader" }).map("flows");
    const a = flowKey(0x0a000001, 0x0a000002, 1234, 80, 6);
    const b = flowKey(0x0a000001, 0x0a000003, 1234, 443, 6);
    const c = flowKey(0x0a000004, 0x0a000002, 53, 53, 17);
    flows.update(a, u64(1n));
    flows.update(b, u64(2n), "noexist");
    flows.update(c, u64(3n));
    expect(readU64(flows.lookup(a)!)).toBe(1n);
    // A key that is a view into a larger buffer is read from its own offset.
    const backing = new Uint8Array(32);
    backing.set(b, 9);
    expect(readU64(flows.lookup(backing.subarray(9, 23))!)).toBe(2n);
    expect(flows.lookup(flowKey(9, 9, 9, 9, 9))).toBeUndefined();

    expect(() => flows.update(a, u64(9n), "noexist")).toThrow(/EEXIST.*key already present/);
    expect(() => flows.update(flowKey(1, 1, 1, 1, 1), u64(9n), "exist")).toThrow(/ENOENT.*key not present/);
    flows.update(a, u64(10n), "exist");
    expect(readU64(flows.lookup(a)!)).toBe(10n);
    expect(() => flows.update(a.subarray(0, 13), u64(1n))).toThrow(/must be 14 bytes, got 13/);
    expect(() => flows.update(a, new Uint8Array(4))).toThrow(/must be 8 bytes, got 4/);

    const seen = new Map([...flows.entries()].map(([k, v]) => [Buffer.from(k).toString("hex"), readU64(v)]));
    expect(seen).toEqual(
      new Map([
        [Buffer.from(a).toString("hex"), 10n],
        [Buffer.from(b).toString("hex"), 2n],
        [Buffer.from(c).toString("hex"), 3n],
      ]),
    );
    const dumped = new Map(flows.dump(2).map(([k, v]) => [Buffer.from(k).toString("hex"), readU64(v)]));
    expect(dumped).toEqual(seen);

    expect(flows.delete(b)).toBe(true);
    expect(flows.delete(b)).toBe(false);
    expect([...flows.keys()]).toHaveLength(2);
    flows.clear();
    expect([...flows.entries()]).toEqual([]);
    expect(flows.dump()).toEqual([]);
  });

  it("reads and writes every CPU's slot of a per-CPU array", () => {
    const counters = load({ name: "loader" }).map("counters");
    const cpus = possibleCpus();
    const key = new Uint8Array([2, 0, 0, 0]);
    const value = new Uint8Array(counters.valueBufferSize);
    for (let cpu = 0; cpu < cpus; cpu++) new DataView(value.buffer).setBigUint64(cpu * 8, BigInt(100 + cpu), true);
    counters.update(key, value);
    const back = counters.lookup(key)!;
    expect(back).toHaveLength(8 * cpus);
    expect(counters.perCpuValues(back).map((v) => readU64(v))).toEqual(Array.from({ length: cpus }, (_, i) => BigInt(100 + i)));
    expect(() => counters.update(key, u64(1n))).toThrow(new RegExp(`must be ${8 * cpus} bytes \\(${cpus} CPUs x 8 bytes\\)`));
    expect(() => counters.delete(key)).toThrow(/array maps have no delete/);
    // Arrays iterate every index; clear zeroes them.
    expect([...counters.keys()]).toHaveLength(4);
    const dumped = counters.dump();
    expect(dumped.map(([k]) => k[0])).toEqual([0, 1, 2, 3]);
    expect(dumped[2]![1]).toEqual(back);
    counters.clear();
    expect(perCpuSum(counters, 2)).toBe(0n);
  });

  it("test-runs the tc program: verdict, rewritten packet and __sk_buff out", () => {
    const obj = load({ name: "loader" });
    const prog = obj.program("classify");
    const counters = obj.map("counters");

    const ipv4 = frame(0x0800);
    const pass = prog.testRun({ data: ipv4, ctx: encodeSkbCtx({ cb: [0, 7] }) });
    expect(pass.retval).toBe(TC_ACT_OK);
    expect(pass.data).toHaveLength(ipv4.length);
    expect(pass.data[5]).toBe(0xab);
    expect(pass.data.subarray(6)).toEqual(ipv4.subarray(6));
    expect(pass.ctx).toHaveLength(SKB_CTX_SIZE);
    const passCtx = decodeSkbCtx(pass.ctx!);
    expect(passCtx.cb[0]).toBe(0x107);
    expect(passCtx.mark).toBe(42);

    const arp = frame(0x0806);
    const drop = prog.testRun({ data: arp, ctx: encodeSkbCtx({ cb: [0, 7] }) });
    expect(drop.retval).toBe(TC_ACT_SHOT);
    expect(drop.data).toEqual(arp);
    expect(decodeSkbCtx(drop.ctx!).cb[0]).toBe(0x207);

    // Without ctx in, a tc program still reports its __sk_buff.
    const bare = prog.testRun({ data: ipv4 });
    expect(decodeSkbCtx(bare.ctx!).cb[0]).toBe(0x100);
    expect(perCpuSum(counters, 0)).toBe(2n);
    expect(perCpuSum(counters, 1)).toBe(1n);
  });

  it("repeats a test run and reports the average duration", () => {
    const obj = load({ name: "loader" });
    const result = obj.program("classify").testRun({ data: frame(0x0800), repeat: 1000 });
    expect(result.retval).toBe(TC_ACT_OK);
    expect(Number.isInteger(result.durationNs)).toBe(true);
    expect(result.durationNs).toBeGreaterThanOrEqual(0);
    expect(perCpuSum(obj.map("counters"), 0)).toBe(1000n);
  });

  it("rejects bad test-run input: short packets here, forbidden ctx fields in the kernel", () => {
    const prog = load({ name: "loader" }).program("classify");
    expect(() => prog.testRun({ data: new Uint8Array(10) })).toThrow(/at least 14 bytes/);
    expect(() => prog.testRun({ data: frame(0x0800), repeat: 0 })).toThrow(InvalidInputError);
    const ctx = encodeSkbCtx();
    ctx[0] = 1; // __sk_buff.len: not accepted in ctx_in
    const err = (() => {
      try {
        prog.testRun({ data: frame(0x0800), ctx });
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(BpfSyscallError);
    expect((err as BpfSyscallError).errnoName).toBe("EINVAL");
    expect((err as Error).message).toMatch(/test run of classify: EINVAL.*only mark, priority/);
  });

  it("explains the kernel's other EINVALs: oversized packets and truncated IP headers", () => {
    const prog = load({ name: "loader" }).program("classify");
    const max = SKB_TEST_RUN_LIMITS.maxData;
    expect(prog.testRun({ data: frame(0x0806, max) }).retval).toBe(TC_ACT_SHOT);
    expect(() => prog.testRun({ data: frame(0x0806, max + 1) })).toThrow(/EINVAL.*over the kernel's skb test-run limit/);
    expect(prog.testRun({ data: frame(0x0800, SKB_TEST_RUN_LIMITS.minIpv4Frame) }).retval).toBe(TC_ACT_OK);
    expect(() => prog.testRun({ data: frame(0x0800, SKB_TEST_RUN_LIMITS.minIpv4Frame - 1) })).toThrow(/shorter than Ethernet \+ IPv4 header \(34 bytes\), got 33/);
    expect(() => prog.testRun({ data: frame(0x86dd, SKB_TEST_RUN_LIMITS.minIpv6Frame - 1) })).toThrow(/IPv6 header \(54 bytes\)/);
  });

  it("pins a map on bpffs, reads it back through BpfMap.openPinned, and unpins it", () => {
    const pins = ensurePinDir(join(pinRoot, "manual"));
    expect(isOnBpffs(pins)).toBe(true);
    const flows = load({ name: "loader" }).map("flows");
    const key = flowKey(1, 2, 3, 4, 6);
    flows.update(key, u64(77n));
    const path = join(pins, "flows");
    flows.pin(path);
    expect(flows.pinnedPath).toBe(path);
    expect(existsSync(path)).toBe(true);
    flows.pin(path); // the same map at the same path again: nothing to do
    const again = BpfMap.openPinned(path);
    try {
      expect(() => again.pin(path)).toThrow(/EEXIST.*something is already pinned there/);
    } finally {
      again.close();
    }

    const reopened = BpfMap.openPinned(path);
    try {
      expect([reopened.name, reopened.keySize, reopened.valueSize, reopened.maxEntries, reopened.typeName]).toEqual([
        "flows",
        14,
        8,
        16,
        "hash",
      ]);
      expect(readU64(reopened.lookup(key)!)).toBe(77n);
      // Same kernel map: writes through one fd are seen through the other.
      reopened.update(key, u64(78n));
      expect(readU64(flows.lookup(key)!)).toBe(78n);
    } finally {
      reopened.close();
    }
    expect(() => reopened.lookup(key)).toThrow(/closed/);

    flows.unpin();
    expect(existsSync(path)).toBe(false);
    expect(flows.pinnedPath).toBeUndefined();
    expect(() => BpfMap.openPinned(path)).toThrow(/ENOENT.*nothing is pinned there/);
  });

  it("keeps map contents across loads with pinDir and reusePinned, and refuses a pinned map of another shape", () => {
    const pins = join(pinRoot, "reuse");
    const first = load({ name: "loader", pinDir: pins });
    expect(first.map("flows").pinnedPath).toBe(join(pins, "flows"));
    expect(existsSync(join(pins, "counters"))).toBe(true);
    const key = flowKey(5, 6, 7, 8, 17);
    first.map("flows").update(key, u64(5n));
    first.close();

    const second = load({ name: "loader", pinDir: pins, reusePinned: true });
    expect([...second.reusedMaps].sort()).toEqual(["counters", "flows"]);
    expect(readU64(second.map("flows").lookup(key)!)).toBe(5n);
    second.close();

    let err: unknown;
    try {
      load({ name: "loader", pinDir: pins, reusePinned: true, mapSizes: { flows: 32 } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MembraneError);
    expect((err as MembraneError).code).toBe("BPF_MAP_INCOMPATIBLE");
    expect((err as Error).message).toMatch(/pinned map .*flows does not match map flows .*max_entries 16 != 32/);

    // Without reusePinned the pins are replaced by fresh, empty maps.
    const third = load({ name: "loader", pinDir: pins, mapSizes: { flows: 32 } });
    expect(third.reusedMaps.size).toBe(0);
    expect(third.map("flows").lookup(key)).toBeUndefined();
    const pinned = BpfMap.openPinned(join(pins, "flows"));
    expect(pinned.maxEntries).toBe(32);
    pinned.close();
  });

  it("throws BpfVerifierError naming the program and carrying the verifier log", () => {
    let err: unknown;
    try {
      load({ name: "reject" }, rejectElf);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BpfVerifierError);
    const v = err as BpfVerifierError;
    expect(v.code).toBe("BPF_VERIFIER");
    expect(v.program).toBe("oob_read");
    expect(v.message).toMatch(/^load BPF object reject: program oob_read rejected by the verifier: /);
    expect(v.message).toMatch(/outside of the packet|invalid access to packet/);
    expect(v.log).toMatch(/invalid access to packet/);
    expect(v.log).toMatch(/processed \d+ insns/);
  });

  it("captures a verifier log far longer than one formatting buffer, whole", () => {
    let err: unknown;
    try {
      load({ name: "longreject" }, compileFixture("long_reject.c", dir));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BpfVerifierError);
    const v = err as BpfVerifierError;
    expect(v.program).toBe("long_reject");
    expect(v.log.length).toBeGreaterThan(64 * 1024);
    // Beginning and end both present: nothing was cut in the middle.
    expect(v.log).toMatch(/^(func#0 @0\n)?0: R1=ctx/);
    expect(v.log).toMatch(/invalid access to packet[\s\S]*processed \d+ insns/);
  });

  it("close() frees the object once; later use says it is closed", () => {
    const obj = load({ name: "loader" });
    const flows = obj.map("flows");
    const prog = obj.program("classify");
    obj.close();
    obj.close();
    expect(obj.closed).toBe(true);
    expect(() => flows.lookup(new Uint8Array(14))).toThrow(/map flows: BPF object loader is closed/);
    expect(() => prog.testRun({ data: frame(0x0800) })).toThrow(/program classify: BPF object loader is closed/);
  });
});

describeIf("tc attach on a veth pair", missingTc(), () => {
  const hostSide = `mbr${tag}a`.slice(0, 15);
  const peerSide = `mbr${tag}b`.slice(0, 15);
  let dir: string | undefined;
  let obj: BpfObject;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "membrane-tc-"));
    obj = BpfObject.load(compileFixture("loader.c", dir), { name: "tcfixture" });
    run("ip", ["link", "add", hostSide, "type", "veth", "peer", "name", peerSide]);
  });

  afterAll(() => {
    // Deleting one end of a veth pair deletes both, with their qdiscs and filters.
    runQuietly("ip", ["link", "del", hostSide]);
    obj?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("attaches to clsact ingress, shows in tc, detaches and removes the qdisc it created", () => {
    const ifindex = interfaceIndex(hostSide);
    const attachment = attachTc(obj.program("classify"), { ifindex, direction: "ingress" });
    expect(attachment.handle).toBeGreaterThan(0);
    expect(attachment.priority).toBeGreaterThan(0);
    expect(attachment.progId).toBeGreaterThan(0);

    const filters = run("tc", ["filter", "show", "dev", hostSide, "ingress"]);
    expect(filters).toMatch(/bpf/);
    expect(filters).toMatch(/classify/);
    expect(filters).toMatch(new RegExp(`id ${attachment.progId}\\b`));
    expect(filters).toMatch(/direct-action/);
    expect(run("tc", ["qdisc", "show", "dev", hostSide])).toMatch(/clsact/);

    attachment.detach();
    attachment.detach();
    expect(attachment.attached).toBe(false);
    expect(run("tc", ["qdisc", "show", "dev", hostSide])).not.toMatch(/clsact/);
    let after = "";
    try {
      after = run("tc", ["filter", "show", "dev", hostSide, "ingress"]);
    } catch {
      after = ""; // no clsact left: tc reports an error instead of an empty list
    }
    expect(after).not.toMatch(/classify/);
  });

  it("leaves a clsact qdisc it did not create, and attaches to egress", () => {
    run("tc", ["qdisc", "add", "dev", peerSide, "clsact"]);
    const attachment = attachTc(obj.program("classify"), { ifindex: interfaceIndex(peerSide), direction: "egress", priority: 7 });
    expect(attachment.priority).toBe(7);
    expect(run("tc", ["filter", "show", "dev", peerSide, "egress"])).toMatch(/classify/);
    attachment.detach();
    expect(run("tc", ["filter", "show", "dev", peerSide, "egress"])).not.toMatch(/classify/);
    expect(run("tc", ["qdisc", "show", "dev", peerSide])).toMatch(/clsact/);
  });

  it("tells apart devices with the same ifindex in two namespaces, and detaches from the right one wherever it is called", () => {
    const ns = `mbr-tcns-${tag}`.slice(0, 30);
    const ifindex = interfaceIndex(hostSide);
    run("ip", ["netns", "add", ns]);
    try {
      // A device in the other namespace with the very same ifindex as hostSide here.
      run("ip", ["-n", ns, "link", "add", "twin", "index", String(ifindex), "type", "veth", "peer", "name", "twin-peer"]);
      const there = withNetns(ns, () => attachTc(obj.program("classify"), { ifindex, direction: "ingress" }));
      const here = attachTc(obj.program("classify"), { ifindex, direction: "ingress" });
      expect(there.netns).not.toBe(here.netns);
      expect(run("ip", ["-n", ns, "-j", "link", "show", "twin"])).toContain(`"ifindex":${ifindex}`);
      // Detached from this namespace: the filter and the clsact it made go from the twin, ours stays.
      there.detach();
      expect(run("tc", ["-n", ns, "qdisc", "show", "dev", "twin"])).not.toMatch(/clsact/);
      expect(run("tc", ["filter", "show", "dev", hostSide, "ingress"])).toMatch(/classify/);
      here.detach();
      expect(run("tc", ["qdisc", "show", "dev", hostSide])).not.toMatch(/clsact/);
    } finally {
      runQuietly("ip", ["netns", "del", ns]);
    }
  });

  it("names a missing interface", () => {
    expect(() => interfaceIndex("mbr-nonexist")).toThrow(/no interface named mbr-nonexist/);
    expect(() => attachTc(obj.program("classify"), { ifindex: 999999, direction: "ingress" })).toThrow(/ENODEV|no such interface/);
  });
});
