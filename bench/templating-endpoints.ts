/**
 * `npm run bench:templating-endpoints [-- <count>]`: N endpoints (default
 * 100) brought up in network namespaces, each pod's veth getting bpf_lxc with
 * its own values on the host side, compiled per endpoint (clang with the
 * endpoint's flags, load, attach: 1.4's way) vs from one template
 * (compiled once, instantiated and attached per endpoint). Side by side in
 * one run: total wall time and CPU seconds (this process plus the compilers
 * it ran). Namespaces and veths are made before either run and are not timed.
 *
 * Topology: one "node" namespace holding every host-side veth (where the
 * programs attach), one namespace per pod holding its end.
 */
import { readFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolveOptions } from "../host/config.js";
import { BPFFS_ROOT } from "../host/bpf/bpffs.js";
import type { BpfObject } from "../host/bpf/object.js";
import { attachTc, interfaceIndex, type TcAttachment } from "../host/bpf/tc.js";
import { loadConfiguredObject } from "../host/kernel/load.js";
import { TemplateCache } from "../host/kernel/templates/cache.js";
import { ClangCompiler } from "../host/kernel/templates/compiler.js";
import { ENDPOINT_FILTER, TemplatedEndpoints } from "../host/kernel/templates/endpoint-programs.js";
import type { EndpointValues } from "../host/kernel/templates/endpoint-values.js";
import { NetnsLab, sweep } from "../host/sys/netns/lab.js";
import { withNetns } from "../host/sys/netns/enter.js";
import { LXC_CALLS_MAP, LXC_ENDPOINT_PROGRAMS, lxcCallsPin } from "../host/kernel/lxc-stages.js";
import { packageRoot } from "../host/package-root.js";
import { num, printTable } from "./report.js";

const PREFIX = "mbr-bench-tpl";
const SHAPE = { nat: false }; // the endpoint shape: masquerading is bpf_host's
const OPTIONS = resolveOptions({ conntrack: { tcpEntries: 65_536, otherEntries: 65_536 }, policy: { endpoints: 1024, ipcache: 4096, entries: 16_384 } });

/** CPU seconds of this process and of its waited-for children (clang), from /proc/self/stat. */
function cpuSeconds(): number {
  const f = readFileSync("/proc/self/stat", "utf8").split(") ")[1]!.split(" ");
  const hz = 100; // USER_HZ on Linux
  // fields after "comm) ": state is [0]; utime [11], stime [12], cutime [13], cstime [14]
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / hz;
}

const endpoint = (i: number): EndpointValues => ({
  id: 1 + i, identity: 10_000 + i, ipv4: `10.210.${i >> 7}.${(i & 127) + 1}`, mac: `02:00:00:d2:${(i >> 8).toString(16).padStart(2, "0")}:${(i & 255).toString(16).padStart(2, "0")}`, ifindex: 0,
});

export async function runTemplatingEndpoints(count: number): Promise<Record<string, unknown>> {
  if (process.getuid?.() !== 0) {
    console.log("bench:templating-endpoints: needs root (namespaces, BPF); skipped");
    return {};
  }
  await sweep(PREFIX);
  const lab = new NetnsLab(PREFIX);
  const work = mkdtempSync(join(tmpdir(), "membrane-bench-tpl-eps-"));
  const pins = join(BPFFS_ROOT, `${PREFIX}-${process.pid}`);
  const held: BpfObject[] = [];
  try {
    const setup = performance.now();
    const node = lab.addNamespace("node");
    const devs: string[] = [];
    for (let i = 0; i < count; i++) {
      const pod = lab.addNamespace(`p${i}`);
      const dev = `lxcb${i}`;
      lab.addVeth({ ns: node, name: dev }, { ns: pod, name: "eth0" });
      lab.linkUp(node, dev);
      devs.push(dev);
    }
    const setupMs = performance.now() - setup;
    const clang = new ClangCompiler();
    const cache = new TemplateCache({ dir: join(work, "templates"), compiler: clang });
    // The node's maps, created and pinned once, shared by both runs (as on a node).
    const holder = await cache.get("bpf_lxc", SHAPE);
    held.push(loadConfiguredObject(holder.elf, OPTIONS, { name: "bench_maps", pinDir: pins, reusePinned: true }));
    // The node-wide stages the compiled endpoints tail-call (once per node, not timed; the template run
    // below installs them again inside its timing, at its first endpoint, as an agent does).
    holder.installStages(OPTIONS, pins);
    rmSync(join(work, "templates"), { recursive: true, force: true }); // the template run starts from an empty cache

    // 1. Compile per endpoint.
    const compiled: Array<{ object: BpfObject; attachments: TcAttachment[] }> = [];
    let cpu0 = cpuSeconds();
    let t0 = performance.now();
    for (let i = 0; i < count; i++) {
      const out = join(work, `ep${i}.o`);
      await clang.compile(join(packageRoot(), "bpf/bpf_lxc.c"), out, holder.meta.defines);
      // What the endpoint loads: its two per-endpoint programs (the datapath is the node-wide stages).
      const object = loadConfiguredObject(readFileSync(out), OPTIONS, {
        name: `bench_c${i}`, pinDir: pins, reusePinned: true, globals: holder.patches(endpoint(i)),
        programs: LXC_ENDPOINT_PROGRAMS, pinPaths: { [LXC_CALLS_MAP]: lxcCallsPin(pins, holder.key) },
      });
      const attachments = withNetns(node, () => {
        const ifindex = interfaceIndex(devs[i]!);
        return (["ingress", "egress"] as const).map((direction) =>
          attachTc(object.program(direction === "ingress" ? "from_container" : "to_container"), { ifindex, direction, ...ENDPOINT_FILTER, replace: true }));
      });
      compiled.push({ object, attachments });
    }
    const compileWall = (performance.now() - t0) / 1000;
    const compileCpu = cpuSeconds() - cpu0;
    for (const c of compiled) {
      c.attachments.forEach((a) => a.detach());
      c.object.close();
    }

    // 2. From a template (the cache starts empty: its one compile is included).
    const tplCache = new TemplateCache({ dir: join(work, "templates"), compiler: clang });
    const eps = new TemplatedEndpoints({ cache: tplCache, options: OPTIONS, pinDir: pins });
    cpu0 = cpuSeconds();
    t0 = performance.now();
    for (let i = 0; i < count; i++) await eps.upsert(endpoint(i), { ifname: devs[i]!, netns: node }, SHAPE);
    const templateWall = (performance.now() - t0) / 1000;
    const templateCpu = cpuSeconds() - cpu0;

    // 3. Endpoints coming and going on the template: every one relabelled (re-instantiated, swapped in place), then removed.
    const compilesBefore = tplCache.stats.compiles;
    cpu0 = cpuSeconds();
    t0 = performance.now();
    for (let i = 0; i < count; i++) await eps.upsert({ ...endpoint(i), identity: 20_000 + i }, { ifname: devs[i]!, netns: node }, SHAPE);
    const relabelWall = (performance.now() - t0) / 1000;
    const relabelCpu = cpuSeconds() - cpu0;
    cpu0 = cpuSeconds();
    t0 = performance.now();
    for (let i = 0; i < count; i++) eps.remove(1 + i);
    const removeWall = (performance.now() - t0) / 1000;
    const removeCpu = cpuSeconds() - cpu0;
    const churnCompiles = tplCache.stats.compiles - compilesBefore;

    printTable(`${count} endpoints brought up in namespaces: bpf_lxc on each pod's veth (host side)`, [
      { way: "compile per endpoint (clang + load + attach)", "wall s": num(compileWall, 2), "CPU s": num(compileCpu, 2), "ms / endpoint": num((compileWall * 1000) / count, 1) },
      { way: "template (1 compile, then instantiate + load + attach)", "wall s": num(templateWall, 2), "CPU s": num(templateCpu, 2), "ms / endpoint": num((templateWall * 1000) / count, 1) },
      { way: "template: every endpoint relabelled (instantiate + replace in place)", "wall s": num(relabelWall, 2), "CPU s": num(relabelCpu, 2), "ms / endpoint": num((relabelWall * 1000) / count, 1) },
      { way: "template: every endpoint removed (detach)", "wall s": num(removeWall, 2), "CPU s": num(removeCpu, 2), "ms / endpoint": num((removeWall * 1000) / count, 1) },
    ], [
      `templates compiled while endpoints were relabelled and removed: ${churnCompiles} (goal 0: ${churnCompiles === 0 ? "met" : "NOT MET"})`,
      `compile per endpoint / template: ${num(compileWall / templateWall, 1)}x wall, ${num(compileCpu / templateCpu, 1)}x CPU`,
      `CPU counts this process and the compilers it ran; ${count} namespaces and veths made beforehand in ${num(setupMs / 1000, 1)} s (not timed)`,
    ]);
    return { count, compile: { wallS: compileWall, cpuS: compileCpu }, template: { wallS: templateWall, cpuS: templateCpu }, relabel: { wallS: relabelWall, cpuS: relabelCpu }, remove: { wallS: removeWall, cpuS: removeCpu }, churnCompiles };
  } finally {
    held.forEach((o) => o.close());
    await lab.teardown();
    rmSync(pins, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  const count = Number(process.argv[2] ?? 100);
  if (!Number.isInteger(count) || count < 1 || count > 1000) {
    console.error(`bench:templating-endpoints: endpoint count must be 1..1000, got ${process.argv[2]}`);
    process.exitCode = 2;
  } else {
    runTemplatingEndpoints(count).catch((err) => {
      console.error(err);
      process.exitCode = 1;
    });
  }
}
