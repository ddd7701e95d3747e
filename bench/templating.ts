/**
 * `npm run bench:templating`: BPF templating against compiling per endpoint,
 * side by side in one run, on the real endpoint program (bpf/bpf_lxc.c).
 *
 *  - compile + load per endpoint (clang with the template's flags, then load
 *    of the endpoint's programs with its values) vs instantiate + load (the
 *    cached template, .rodata set before load). Goal >= 50x (Cilium 1.5
 *    measured ~25x). bpf_lxc is split (bpf/lib/lxc_calls.h): what an endpoint
 *    loads is its two small per-endpoint programs; the datapath is two
 *    node-wide stages, loaded once per node and template into the template's
 *    pinned prog array before any endpoint (timed, and shown, on its own). Both
 *    sides load the same programs against the same installed stages.
 *  - instantiate alone (libbpf open, .rodata written, closed: everything but
 *    the kernel) vs clang alone. Goal >= 500x.
 *  - instantiate + load vs plain load of the same already compiled object
 *    without endpoint values. Goal <= 1.3x.
 *  - ns/packet of the templated program (per-endpoint program, handover,
 *    tail call, stage) vs the generic datapath as it ran before the split (the
 *    stage run directly, endpoint looked up in endpoints4) and vs the generic
 *    bpf_lxc (split too: the tail call without the constants) on the same
 *    packets, BPF_PROG_TEST_RUN with repeat:
 *    a new flow policy denies (every repetition is a CT miss and a policy
 *    decision, where the templated program skips the endpoint lookup), and
 *    an established flow (no policy: both should cost the same).
 *
 * Every load reuses the datapath maps pinned by the first one (as an agent's
 * endpoints share the node's conntrack, NAT and policy maps), so a load is
 * what an endpoint costs: the verifier and its .rodata map. Medians of
 * several runs; a missed goal prints NOT MET.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolveOptions } from "../host/config.js";
import { BpfObject } from "../host/bpf/object.js";
import { BPFFS_ROOT } from "../host/bpf/bpffs.js";
import { encodeSkbCtx } from "../host/bpf/skb-ctx.js";
import { loadConfiguredObject, setKernelClock } from "../host/kernel/load.js";
import { KernelPolicyTables } from "../host/kernel/policy-tables.js";
import { TemplateCache } from "../host/kernel/templates/cache.js";
import { ClangCompiler } from "../host/kernel/templates/compiler.js";
import type { EndpointValues } from "../host/kernel/templates/endpoint-values.js";
import type { TemplateShape } from "../host/kernel/templates/shape.js";
import { PolicyDatapathWriter } from "../host/policy/datapath-writer.js";
import { LXC_CALLS_MAP, LXC_ENDPOINT_PROGRAMS, lxcCallsPin } from "../host/kernel/lxc-stages.js";
import { ethernet, packet4 } from "../host/packet/build.js";
import { packageRoot } from "../host/package-root.js";
import { num, printTable } from "./report.js";

const COMPILE_RUNS = 5;
const LOAD_RUNS = 15;
const SPECIALISE_RUNS = 200;
const REPEAT = 20_000;
const PACKET_RUNS = 15;
const OPTIONS = resolveOptions({ conntrack: { tcpEntries: 65_536, otherEntries: 65_536 }, policy: { endpoints: 1024, ipcache: 4096, entries: 16_384 } });

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const time = (fn: () => void) => {
  const t = performance.now();
  fn();
  return performance.now() - t;
};
const timeAsync = async (fn: () => Promise<void>) => {
  const t = performance.now();
  await fn();
  return performance.now() - t;
};
const endpoint = (i: number): EndpointValues => ({
  id: 100 + i, identity: 5000 + i, ipv4: `10.200.${i >> 8}.${i & 255}`, ipv6: `fd00::c8:${i.toString(16)}`, mac: `02:00:00:00:c8:${(i & 255).toString(16).padStart(2, "0")}`, ifindex: 1000 + i,
});
const goal = (met: boolean) => (met ? "met" : "NOT MET");

/**
 * The shapes measured: the endpoint program as the agent gives it to pods
 * (masquerading is bpf_host's job on the external device, so no NAT stage),
 * and the full shape (every stage, as the generic objects are built).
 */
const SHAPES: Array<{ name: string; shape: Partial<TemplateShape> }> = [
  { name: "endpoint shape (LB, policy; NAT is bpf_host's)", shape: { nat: false } },
  { name: "full shape (LB, NAT, policy)", shape: {} },
];

export async function runTemplating(): Promise<Record<string, unknown>> {
  if (process.getuid?.() !== 0) {
    console.log("bench:templating: needs root (loading BPF programs); skipped");
    return {};
  }
  const out: Record<string, unknown> = {};
  for (const { name, shape } of SHAPES) out[name] = await runShape(name, shape);
  return out;
}

async function runShape(shapeName: string, shape: Partial<TemplateShape>): Promise<Record<string, unknown>> {
  const work = mkdtempSync(join(tmpdir(), "membrane-bench-templating-"));
  const pins = join(BPFFS_ROOT, `membrane-bench-templating-${process.pid}`);
  const objects: BpfObject[] = [];
  try {
    const clang = new ClangCompiler();
    const cache = new TemplateCache({ dir: join(work, "templates"), compiler: clang });
    const firstMs = await timeAsync(async () => void (await cache.get("bpf_lxc", shape)));
    const template = await cache.get("bpf_lxc", shape);
    const load = (elf: Uint8Array, globals: ReturnType<typeof template.patches> | undefined, name: string) =>
      loadConfiguredObject(elf, OPTIONS, { name, pinDir: pins, reusePinned: true, globals });
    // What an endpoint loads: its two per-endpoint programs, tail-calling the template's installed stages.
    const loadEndpoint = (elf: Uint8Array, globals: ReturnType<typeof template.patches> | undefined, name: string) =>
      loadConfiguredObject(elf, OPTIONS, { name, pinDir: pins, reusePinned: true, globals, programs: LXC_ENDPOINT_PROGRAMS, pinPaths: { [LXC_CALLS_MAP]: lxcCallsPin(pins, template.key) } });
    // The first load creates and pins the shared maps; not timed.
    objects.push(load(template.elf, undefined, "bench_pin"));
    // The node-wide stages, once per node and template (an agent does this at its first endpoint of the template).
    const stageLoad: number[] = [];
    for (let i = 0; i < 3; i++) stageLoad.push(template.installStages(OPTIONS, pins).ms);

    let n = 0;
    // 1. clang + load per endpoint vs instantiate + load.
    const compileLoad: number[] = [];
    const clangOnly: number[] = [];
    for (let i = 0; i < COMPILE_RUNS; i++) {
      const ep = endpoint(n++);
      const out = join(work, `ep${i}.o`);
      let compileMs = 0;
      const total = await timeAsync(async () => {
        compileMs = await timeAsync(() => clang.compile(join(packageRoot(), "bpf/bpf_lxc.c"), out, template.meta.defines));
        const elf = readFileSync(out);
        loadEndpoint(elf, template.patches(ep), `bench_c${i}`).close();
      });
      compileLoad.push(total);
      clangOnly.push(compileMs);
    }
    const instLoad: number[] = [];
    const plainLoad: number[] = [];
    const mapsOnlyLoad: number[] = [];
    const wholeLoad: number[] = [];
    for (let i = 0; i < LOAD_RUNS; i++) {
      // Alternate, so drift on a shared machine hits both alike.
      const ep = endpoint(n++);
      instLoad.push(time(() => template.instantiate(ep, OPTIONS, { name: `bench_t${i}`, pinDir: pins, reusePinned: true }).close()));
      plainLoad.push(time(() => loadEndpoint(template.elf, undefined, `bench_p${i}`).close()));
      // Everything instantiate + load does except handing the programs to the verifier: what is left to win outside it.
      const epm = endpoint(n++);
      mapsOnlyLoad.push(time(() => loadConfiguredObject(template.elf, OPTIONS, { name: `bench_m${i}`, pinDir: pins, reusePinned: true, globals: template.patches(epm), mapsOnly: true }).close()));
      // Before the split an endpoint loaded this: every program of the object, the whole datapath verified (here with its own array).
      if (i < 5) wholeLoad.push(time(() => loadConfiguredObject(template.elf, OPTIONS, { name: `bench_w${i}`, globals: template.patches(epm) }).close()));
    }
    const specialise: number[] = [];
    for (let i = 0; i < SPECIALISE_RUNS; i++) {
      const ep = endpoint(n++);
      specialise.push(time(() => template.specialise(ep)));
    }

    const cl = median(compileLoad), il = median(instLoad), pl = median(plainLoad), co = median(clangOnly), sp = median(specialise), mo = median(mapsOnlyLoad);
    const st = median(stageLoad), wl = median(wholeLoad);
    const r1 = cl / il, r2 = co / sp, r3 = il / pl;
    printTable(`BPF templating: bpf_lxc per endpoint, ${shapeName} (median ms)`, [
      { path: "clang compile + load (the endpoint's programs)", ms: num(cl, 2), runs: COMPILE_RUNS },
      { path: "instantiate + load (template)", ms: num(il, 2), runs: LOAD_RUNS },
      { path: "clang compile alone", ms: num(co, 2), runs: COMPILE_RUNS },
      { path: "instantiate alone (open, .rodata set, no kernel)", ms: num(sp, 3), runs: SPECIALISE_RUNS },
      { path: "plain load of the endpoint's programs (no values)", ms: num(pl, 2), runs: LOAD_RUNS },
      { path: "instantiate + load, programs not loaded (no verifier)", ms: num(mo, 2), runs: LOAD_RUNS },
      { path: "node-wide stages: load + install (once per node and template)", ms: num(st, 2), runs: stageLoad.length },
      { path: "whole object load (what an endpoint loaded before the split)", ms: num(wl, 2), runs: wholeLoad.length },
    ], [
      `compile+load / instantiate+load: ${num(r1, 1)}x (goal >= 50x, Cilium 25x): ${goal(r1 >= 50)}`,
      `clang / instantiate alone: ${num(r2, 0)}x (goal >= 500x): ${goal(r2 >= 500)}`,
      `instantiate+load / plain load: ${num(r3, 2)}x (goal <= 1.3x): ${goal(r3 <= 1.3)}`,
      `the verifier's share of instantiate+load: ${num(Math.max(0, 100 * (1 - mo / il)), 1)}% (open, .rodata, pinned maps: ${num(mo, 2)} ms); 50x needs instantiate+load <= ${num(cl / 50, 1)} ms`,
      `the split: an endpoint loads ${num(il, 2)} ms instead of ${num(wl, 2)} ms (${num(wl / il, 1)}x less); the stages (${num(st, 2)} ms) are loaded once per node and template`,
      `the template itself was compiled once in ${num(firstMs, 0)} ms (cache miss: key, clang, checksum, meta.json)`,
      "loads reuse the datapath maps pinned by a first load, as endpoints share the node's maps",
    ]);

    // 2. ns/packet: templated vs generic on the same packets.
    const self = endpoint(9999 % 4000);
    const templated = template.instantiate(self, OPTIONS, { name: "bench_tpl" });
    objects.push(templated);
    const generic = loadConfiguredObject(template.elf, OPTIONS, { name: "bench_gen" });
    objects.push(generic);
    const selfRecord = { ...self, enforceIngress: true, enforceEgress: true };
    new PolicyDatapathWriter([new KernelPolicyTables(generic)]).setEndpoints([selfRecord]);
    for (const o of [generic, templated]) {
      const w = new PolicyDatapathWriter([new KernelPolicyTables(o)]);
      w.setIpcache([{ cidr: "10.0.0.0/8", identity: 3000 }]);
      w.applyPolicy({ recomputed: [self.id], changes: new Map([[self.id, { add: [{ identity: 3000, port: 443, proto: 6, direction: "egress", deny: false }], remove: [] }]]) });
      setKernelClock(o, 1000);
    }
    const b = packet4({ src: self.ipv4!, dst: "10.1.2.3" });
    const frame = (p: Uint8Array) => ethernet({ etherType: 0x0800 }, p);
    const denied = frame(b.tcp({ sport: 40000, dport: 80, flags: { syn: true } }));
    const allowed = frame(b.tcp({ sport: 40001, dport: 443, flags: { syn: true } }));
    const ack = frame(b.tcp({ sport: 40001, dport: 443, flags: { ack: true } }));
    const run = (o: BpfObject, f: Uint8Array, repeat: number, program = "from_container") => {
      const r = o.program(program).testRun({ data: f, ctx: encodeSkbCtx({ cb: [0] }), repeat });
      return r;
    };
    // Open the allowed flow in both, check the denied one is denied in both.
    for (const o of [generic, templated]) {
      if (run(o, allowed, 1).retval !== 0) throw new Error(`${o.name}: the allowed SYN was not passed`);
      if (run(o, denied, 1).retval !== 2) throw new Error(`${o.name}: the denied SYN was not dropped`);
    }
    // Three ways through the same datapath: the stage run directly (no tail call, the endpoint looked up:
    // the generic program as it was before the split), the generic bpf_lxc (per-endpoint program with no
    // constants, tail call), and the templated instance (constants handed over, tail call).
    const ways = [
      ["unsplit generic", generic, "lxc_stage_from_container"],
      ["generic", generic, "from_container"],
      ["templated", templated, "from_container"],
    ] as const;
    const rows = [] as Array<Record<string, string>>;
    const results: Record<string, { unsplit: number; generic: number; templated: number }> = {};
    for (const [name, f, want] of [["new flow, denied by policy", denied, 2], ["established flow", ack, 0]] as const) {
      const xs: number[][] = ways.map(() => []);
      for (let i = 0; i < PACKET_RUNS; i++) {
        ways.forEach(([label, o, program], w) => {
          const r = run(o, f, REPEAT, program);
          if (r.retval !== want) throw new Error(`${label}: ${name}: tc action ${r.retval}, expected ${want}`);
          xs[w]!.push(r.durationNs);
        });
      }
      const [um, gm, tm] = xs.map(median) as [number, number, number];
      results[name] = { unsplit: um, generic: gm, templated: tm };
      rows.push({
        packets: name, "unsplit generic ns": num(um, 1), "generic (tail call) ns": num(gm, 1), "templated (tail call) ns": num(tm, 1),
        "tail call + handover ns": num(gm - um, 1), "templated / unsplit": `${num(tm / um, 3)}x`,
      });
    }
    const newFlow = results["new flow, denied by policy"]!;
    printTable(`ns/packet, bpf_lxc from_container, ${shapeName}, BPF_PROG_TEST_RUN repeat ${num(REPEAT)} (median of ${PACKET_RUNS})`, rows, [
      `templated skips the endpoint-map lookup on new flows: ${goal(newFlow.templated <= newFlow.generic)} (goal: templated <= generic, both through the tail call)`,
      "unsplit generic: the stage program run directly, as from_container ran before the split; the difference to generic is the tail call and the handover",
    ]);
    return {
      ms: { compileLoad: cl, instantiateLoad: il, clang: co, instantiate: sp, plainLoad: pl, mapsOnlyLoad: mo, stages: st, wholeLoad: wl, firstCompile: firstMs },
      ratios: { compileLoadVsInstantiateLoad: r1, clangVsInstantiate: r2, instantiateLoadVsPlainLoad: r3 },
      nsPerPacket: results,
    };
  } finally {
    objects.forEach((o) => o.close());
    rmSync(pins, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  runTemplating().catch((err) => {
    console.error(err);
    process.exitCode = 1;
  });
}
