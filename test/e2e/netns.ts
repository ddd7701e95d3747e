/**
 * The kernel endpoint test's namespaces: two, joined by one veth, built with
 * the shared helpers in host/netns/ (iproute2 calls, setns, a lab that
 * records what it makes and removes it even when a test failed halfway)
 * and traffic from the agent in host/demo/agent.ts run inside them.
 */
import { existsSync } from "node:fs";
import { bpfObjectPath } from "../../host/tools/build-bpf.js";
import { kernelUnavailable } from "../differential/kernel-available.js";
import { NetnsLab } from "../../host/sys/netns/lab.js";
import { iproute2Unavailable } from "../../host/sys/netns/iproute2.js";
import type { NetnsProcess } from "../../host/sys/netns/process.js";
import { agentMissing, startAgent } from "../../host/demo/agents.js";

export { ip, tc, netnsList } from "../../host/sys/netns/iproute2.js";
export { withNetns } from "../../host/sys/netns/enter.js";

/** Why the namespace tests cannot run here, or undefined. */
export function e2eUnavailable(): string | undefined {
  const kernel = kernelUnavailable();
  if (kernel) return kernel;
  if (!existsSync(bpfObjectPath("bpf_lxc"))) return `${bpfObjectPath("bpf_lxc")} is missing: install clang and libbpf-dev, run npm run build`;
  return iproute2Unavailable() ?? agentMissing();
}

/**
 * Two namespaces joined by one veth. The endpoint's end of the veth (the
 * "host side", where Cilium attaches bpf_lxc) is in `peer`; the pod's end,
 * eth0, is in `pod`. See kernel-endpoint.test.ts for why.
 */
export class Topology {
  readonly lab: NetnsLab;
  readonly pod: string;
  readonly peer: string;
  /** The host-side veth, in the peer namespace (unique per run, so a leak would be recognisable). */
  readonly lxc: string;
  readonly podIf = "eth0";

  constructor(readonly tag: string, readonly addrs: { pod4: string; peer4: string; pod6: string; peer6: string }) {
    this.lab = new NetnsLab(`mbr-e2e-${tag}`);
    this.pod = `${this.lab.prefix}-pod`;
    this.peer = `${this.lab.prefix}-peer`;
    this.lxc = `lxc${tag}`.slice(0, 15);
  }

  create(): void {
    const { lab } = this;
    lab.addNamespace("pod");
    lab.addNamespace("peer");
    // Made in place: neither end ever exists in the test's own namespace.
    lab.addVeth({ ns: this.peer, name: this.lxc }, { ns: this.pod, name: this.podIf });
    const { pod4, peer4, pod6, peer6 } = this.addrs;
    lab.addAddress(this.pod, this.podIf, `${pod4}/24`);
    lab.addAddress(this.pod, this.podIf, `${pod6}/64`, { nodad: true });
    lab.addAddress(this.peer, this.lxc, `${peer4}/24`);
    lab.addAddress(this.peer, this.lxc, `${peer6}/64`, { nodad: true });
    lab.linkUp(this.pod, this.podIf);
    lab.linkUp(this.peer, this.lxc);
  }

  /** Waits (bounded) until both ends report carrier. */
  async waitUp(ms = 5_000): Promise<void> {
    await this.lab.waitUp(this.pod, this.podIf, ms);
    await this.lab.waitUp(this.peer, this.lxc, ms);
  }

  /** Starts the traffic agent (host/demo/agent.ts) in namespace `ns`. */
  agent(ns: string, args: Array<string | number>): NetnsProcess {
    return startAgent(this.lab, ns, args, { limitMs: 8000 });
  }

  /** Kills the agents still running (bounded wait for their exit), then deletes the namespaces (and with them the veth). */
  destroy(): Promise<string[]> {
    return this.lab.teardown();
  }

  /** What of this run is still visible from the test's namespace. */
  leftovers(pinDir: string): string[] {
    const left = this.lab.leftovers();
    if (existsSync(pinDir)) left.push(`bpffs directory ${pinDir}`);
    return left;
  }
}
