/**
 * `membrane bpf ...`: the kernel datapath's pinned maps. Each map family is a
 * subgroup registered by its own file with `registerBpf<Family>(bpf)`; to add
 * one (e.g. `registerBpfTemplate`), import it here and call it below.
 */
import { Command } from "commander";
import { example, refuseOtherVerbs } from "./command.js";
import { registerBpfCt } from "./bpf-ct.js";
import { registerBpfNat } from "./bpf-nat.js";
import { registerBpfLb } from "./lb.js";
import { registerBpfEndpoint, registerBpfPolicy } from "./policy-tables.js";

export function registerBpf(program: Command): void {
  const bpf = program.command("bpf")
    .description("the kernel datapath's maps, read from their pins (default /sys/fs/bpf/membrane, or $MEMBRANE_BPFFS)");
  refuseOtherVerbs(bpf, (got) => `bpf: expected "bpf ct list", "bpf nat list|flush", "bpf lb list", "bpf policy get" or "bpf endpoint list", got "bpf ${got.slice(0, 2).join(" ")}"`);
  example(bpf, "membrane bpf ct list --table tcp4", "membrane bpf lb list --json");
  registerBpfCt(bpf);
  registerBpfNat(bpf);
  registerBpfLb(bpf);
  registerBpfPolicy(bpf);
  registerBpfEndpoint(bpf);
}
