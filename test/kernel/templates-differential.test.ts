// A templated endpoint program decides exactly like the generic program
// configured with the same values: the same compiled bpf_lxc, once with the
// endpoint's constants in .rodata (and its own address absent from the
// endpoint maps, so only the constants can tell it who it is), once generic
// with the endpoint in the maps. The same packets go through both with
// BPF_PROG_TEST_RUN (from_container for egress, to_container for ingress);
// verdict, drop reason, conntrack result, bytes, every conntrack table, the
// policy table with its hit counters, and the counters must match.
import { afterAll, beforeAll, expect, test } from "vitest";
import { rmSync } from "node:fs";
import { dirname } from "node:path";
import { KernelDatapath } from "../../host/kernel/datapath.js";
import { resolveOptions } from "../../host/config.js";
import { BPFFS_ROOT } from "../../host/bpf/bpffs.js";
import { join } from "node:path";
import type { BpfObject } from "../../host/bpf/object.js";
import { LXC_ENDPOINT_PROGRAMS, LXC_STAGES } from "../../host/kernel/lxc-stages.js";
import { TemplateCache } from "../../host/kernel/templates/cache.js";
import type { TemplateShape } from "../../host/kernel/templates/shape.js";
import { PolicyDatapathWriter } from "../../host/policy/datapath-writer.js";
import { ethernet, packet4, packet6 } from "../../host/packet/build.js";
import type { EndpointRecord } from "../../host/policy/types.js";
import { compareTables, runDifferential, type DiffEvent, type Pair } from "../differential/harness.js";
import { seededRandom } from "../support/seeded-random.js";
import { ENDPOINTS, EP_A, EP_B, IPCACHE, POLICY_A, policyDiff, policySteps } from "../fixtures/policy-scenarios.js";
import { templateUnavailable, tempTemplatesDir } from "./template-env.js";
import { describeIf } from "../support/describe-if.js";

const frame = (packet: Uint8Array) => ethernet({ etherType: packet[0]! >> 4 === 4 ? 0x0800 : 0x86dd }, packet);
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const OPTIONS = { conntrack: { tcpEntries: 8192, otherEntries: 8192 }, fragments: { entries: 64 }, policy: { endpoints: 64, ipcache: 1024, entries: 4096 } };
const LXC = { egress: "from_container", ingress: "to_container" };

function policyRows(d: KernelDatapath): string[] {
  return d.policyTables().dump("policy").map(([k, v]) => `${hex(k)}=${hex(v)}`).sort();
}

describeIf("templated bpf_lxc == generic bpf_lxc with the same values", templateUnavailable(), () => {
  const dir = templateUnavailable() !== undefined ? "" : tempTemplatesDir();
  const cache = templateUnavailable() !== undefined ? undefined! : new TemplateCache({ dir });
  const open: KernelDatapath[] = [];
  const pins = join(BPFFS_ROOT, `membrane-test-tpl-split-${process.pid}`);
  afterAll(() => {
    open.forEach((d) => d.close());
    rmSync(pins, { recursive: true, force: true });
    if (dir) rmSync(dirname(dir), { recursive: true, force: true });
  });

  /** The instance really is the split one: its per-endpoint programs in the kernel, the datapath stages not. */
  function splitInstance(o: BpfObject): BpfObject {
    expect(LXC_ENDPOINT_PROGRAMS.map((p) => o.program(p).loaded)).toEqual([true, true]);
    expect(LXC_STAGES.map((s) => o.program(s.program).loaded)).toEqual([false, false]);
    return o;
  }

  /** generic: EP_A in the endpoint maps; templated: EP_A only in .rodata; control: neither. */
  async function trio(shape: Partial<TemplateShape>, self: EndpointRecord, genericShape: Partial<TemplateShape> = shape, pinned = false) {
    const template = await cache.get("bpf_lxc", shape);
    const genericElf = (await cache.get("bpf_lxc", genericShape)).elf;
    const generic = await KernelDatapath.create(OPTIONS, { elf: genericElf, programs: LXC });
    // pinned: as the agent runs it, the instance's two per-endpoint programs only, on the node's (here: a
    // fresh) pinned maps, tail-calling the stages the template installed once in its pinned prog array.
    // Otherwise a self-contained instance: the whole object, its stages in its own array.
    const templated = pinned
      ? KernelDatapath.fromObject(OPTIONS, splitInstance(template.instantiate(self, resolveOptions(OPTIONS), { name: "split_tpl", pinDir: pins, reusePinned: true })), LXC)
      : await KernelDatapath.create(OPTIONS, { elf: template.elf, programs: LXC, globals: template.patches(self) });
    const control = await KernelDatapath.create(OPTIONS, { elf: template.elf, programs: LXC });
    open.push(generic, templated, control);
    const others = ENDPOINTS.filter((e) => e.id !== self.id);
    new PolicyDatapathWriter([generic.policyTables()]).setEndpoints([self, ...others]);
    for (const d of [templated, control]) new PolicyDatapathWriter([d.policyTables()]).setEndpoints(others);
    for (const d of [generic, templated, control]) {
      const w = new PolicyDatapathWriter([d.policyTables()]);
      w.setIpcache(IPCACHE);
      w.applyPolicy(policyDiff(POLICY_A));
    }
    return { generic, templated, control };
  }

  /** The policy steps of both families, then seeded flows to, from and around the endpoint, with replies. */
  function events(): DiffEvent[] {
    const out: DiffEvent[] = [];
    for (const family of [4, 6] as const) {
      for (const s of policySteps(family)) out.push({ kind: "packet", frame: frame(s.packet), direction: s.direction, now: 1000, note: s.note });
    }
    const rand = seededRandom(1414);
    const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)]!;
    const peers = { 4: ["10.0.2.5", "10.0.2.9", "10.3.0.1", "8.8.8.8", EP_B.v4], 6: ["fd00::2:5", "fd00::2:9", "fd00::3:1", "2001:db8::8", EP_B.v6] };
    const self = { 4: EP_A.v4, 6: EP_A.v6 };
    let sport = 30_000;
    for (let i = 0; i < 1500; i++) {
      const family = rand() < 0.5 ? 4 : 6;
      const peer = pick(peers[family]);
      // Mostly the endpoint's own flows; some between other addresses (looked up in the maps by both).
      const local = rand() < 0.85 ? self[family] : pick(peers[family]);
      const egress = rand() < 0.5;
      const [src, dst] = egress ? [local, peer] : [peer, local];
      const b = family === 4 ? packet4({ src, dst }) : packet6({ src, dst });
      const dport = pick([22, 53, 80, 443, 8080, 9999]);
      const sp = sport++;
      const kind = rand();
      const first = kind < 0.5 ? b.tcp({ sport: sp, dport, flags: { syn: true } }) : kind < 0.85 ? b.udp({ sport: sp, dport, payload: Uint8Array.of(7) })
        : family === 4 ? (b as ReturnType<typeof packet4>).icmpEcho({ request: true, id: sp & 0xffff, seq: 1 })
        : (b as ReturnType<typeof packet6>).icmp6Echo({ request: true, id: sp & 0xffff, seq: 1 });
      const now = 2000 + Math.floor(i / 10);
      out.push({ kind: "packet", frame: frame(first), direction: egress ? "egress" : "ingress", now, note: `flow ${i}` });
      if (kind < 0.85 && rand() < 0.6) {
        const r = family === 4 ? packet4({ src: dst, dst: src }) : packet6({ src: dst, dst: src });
        const reply = kind < 0.5 ? r.tcp({ sport: dport, dport: sp, flags: { syn: true, ack: true } }) : r.udp({ sport: dport, dport: sp, payload: Uint8Array.of(8) });
        out.push({ kind: "packet", frame: frame(reply), direction: egress ? "ingress" : "egress", now, note: `reply ${i}` });
      }
    }
    return out;
  }

  for (const [name, shape, genericShape, pinned] of [
    ["enforcing both directions", {}, {}],
    // The agent's form: an endpoint instance that loads no datapath of its own.
    ["an instance on pinned maps (per-endpoint programs only, stages installed once)", { nat: false }, {}, true],
    ["enforcing ingress only", { enforceEgress: false }, { enforceEgress: false }],
    // The endpoint shape compiles the NAT stage out; with NAT not configured the full generic program decides the same.
    ["endpoint shape (no NAT stage) vs the full generic program", { nat: false }, {}],
  ] as const) {
    test(`${name}: same verdicts, bytes, conntrack and policy tables`, { timeout: 120_000 }, async () => {
      const self: EndpointRecord = { ...ENDPOINTS.find((e) => e.id === EP_A.id)!, enforceIngress: true, enforceEgress: (shape as Partial<TemplateShape>).enforceEgress ?? true };
      const { generic, templated, control } = await trio(shape, self, genericShape, pinned === true);
      const pair = { wasm: generic, kernel: templated, close() {} } as unknown as Pair;
      const evs = events();
      const result = runDifferential(pair, evs, 100);
      expect(result.divergence).toBeUndefined();
      expect(result.packets).toBe(evs.length);
      expect(compareTables(pair)).toBeUndefined();
      expect(policyRows(templated)).toEqual(policyRows(generic));

      // Not two programs agreeing on nothing: policy decided the endpoint's flows
      // in the templated program (whose maps do not know the endpoint) ...
      const drops = templated.counters().drops.find((d) => d.reason === "DROP_POLICY")?.packets ?? 0;
      expect(drops).toBeGreaterThan(50);
      const fwd = templated.counters().forwarded;
      expect(fwd.egress.packets + fwd.ingress.packets).toBeGreaterThan(50);
      // ... and without the constants the same maps decide otherwise (EP_A unknown: not policed).
      for (const e of evs) if (e.kind === "packet") control.decide(e.frame, { link: "ethernet", direction: e.direction, now: e.now });
      const controlDrops = control.counters().drops.find((d) => d.reason === "DROP_POLICY")?.packets ?? 0;
      expect(controlDrops).toBeLessThan(drops);
    });
  }
});
