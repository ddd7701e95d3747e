/**
 * The node-wide stages of the split endpoint program (bpf/lib/lxc_calls.h):
 * which program goes in which slot of a bpf_lxc object's prog array
 * `lxc_calls`, putting them there, and where a template's array is pinned.
 *
 * An object loaded whole (the generic bpf_lxc of AttachedDatapath, a test
 * run's self-contained instance) fills its own array from its own stages:
 * loadConfiguredObject calls installLxcStages. An endpoint instance loads its
 * per-endpoint programs only and reaches the stages its template installed,
 * once per node, in the template's pinned array (Template.installStages).
 * Each slot update is atomic: a packet tail-calls either the old stage or the
 * new one, never an empty slot.
 */
import { readdirSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import type { BpfObject } from "../bpf/object.js";
import { LxcCallSlot } from "../generated/layout.js";
import { wrap } from "../errors.js";

export const LXC_CALLS_MAP = "lxc_calls";

/** Slot -> the stage program that belongs there. */
export const LXC_STAGES: ReadonlyArray<{ slot: number; program: string }> = [
  { slot: LxcCallSlot.LXC_CALL_FROM_CONTAINER, program: "lxc_stage_from_container" },
  { slot: LxcCallSlot.LXC_CALL_TO_CONTAINER, program: "lxc_stage_to_container" },
];

/** The per-endpoint programs: all an endpoint instance loads. */
export const LXC_ENDPOINT_PROGRAMS: readonly string[] = ["from_container", "to_container"];

const PIN_PREFIX = `${LXC_CALLS_MAP}_`;
/** Hex digits of the template key in its array's pin name. */
const PIN_KEY_DIGITS = 16;

/** Where the prog array of template `key` is pinned under the node's pin dir. */
export function lxcCallsPin(pinDir: string, key: string): string {
  return join(pinDir, `${PIN_PREFIX}${key.slice(0, PIN_KEY_DIGITS)}`);
}

const u32 = (n: number) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
};

/**
 * Puts `object`'s loaded stage programs into its lxc_calls array; returns
 * their program fds' slots written (0 for an object without the split, or
 * loaded without its stages).
 */
export function installLxcStages(object: BpfObject): number {
  const calls = object.maps.get(LXC_CALLS_MAP);
  if (!calls) return 0;
  let installed = 0;
  for (const { slot, program } of LXC_STAGES) {
    const stage = object.programs.get(program);
    if (!stage?.loaded) continue;
    try {
      calls.update(u32(slot), u32(stage.fd));
    } catch (err) {
      throw wrap(`install stage ${program} in ${LXC_CALLS_MAP}[${slot}] of ${object.name}`, err);
    }
    installed++;
  }
  return installed;
}

/** The program ids in an lxc_calls array (0: empty slot), read back from the kernel. */
export function lxcStageIds(object: BpfObject): number[] {
  const calls = object.map(LXC_CALLS_MAP);
  return LXC_STAGES.map(({ slot }) => {
    const v = calls.lookup(u32(slot));
    return v ? new DataView(v.buffer, v.byteOffset).getUint32(0, true) : 0;
  });
}

/**
 * Unpins the prog arrays of templates not in `keep` (keys): run after the
 * template cache dropped the templates no endpoint uses. The kernel empties a
 * prog array when its last pin and fd are gone, so a program still attached
 * and tail-calling through such an array would then drop everything with
 * DROP_MISSED_TAIL_CALL: only arrays of templates no endpoint uses go.
 */
export function removeStaleLxcCalls(pinDir: string, keep: Iterable<string>): string[] {
  const kept = new Set([...keep].map((k) => k.slice(0, PIN_KEY_DIGITS)));
  let names: string[];
  try {
    names = readdirSync(pinDir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const n of names) {
    if (!n.startsWith(PIN_PREFIX) || !/^[0-9a-f]+$/.test(n.slice(PIN_PREFIX.length))) continue;
    if (kept.has(n.slice(PIN_PREFIX.length))) continue;
    unlinkSync(join(pinDir, n));
    removed.push(n);
  }
  return removed;
}
