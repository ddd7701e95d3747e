// A namespace of the test's own with endpoint 1 (app=src, 10.91.0.1) on a veth
// end, a state file whose policy lets it send UDP to 10.92.0.0/24 port 7000
// only, and a one-shot UDP sender: traffic with known verdicts for a real
// agent (metrics and monitor tests).
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { cli } from "../support/run-cli.js";
import { NetnsLab, sweep } from "../../host/sys/netns/lab.js";
import type { NetnsProcess } from "../../host/sys/netns/process.js";
import { CLI } from "../agent/agent-lab.js";

export const SRC = "10.91.0.1";
export const DST = "10.92.0.2";
const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: src}
spec:
  endpointSelector: {matchLabels: {app: src}}
  egress:
  - toCIDR: [10.92.0.0/24]
    toPorts: [{ports: [{port: "7000", protocol: UDP}]}]
`;

/** A state file with endpoint 1 (app=src at SRC) allowed UDP 7000 toward 10.92.0.0/24 only. */
export async function policyStateFile(dir: string): Promise<string> {
  const state = join(dir, "state.json");
  writeFileSync(state, JSON.stringify({ conntrack: { tcpEntries: 4096, otherEntries: 4096 }, policy: { endpoints: 16, ipcache: 64, entries: 256 } }));
  const policyFile = join(dir, "policy.yaml");
  writeFileSync(policyFile, POLICY);
  for (const args of [["endpoint", "add", "1", "--labels", "app=src", "--ipv4", SRC], ["policy", "import", policyFile]]) {
    const r = await cli(...args, "--config", state);
    if (r.code !== 0) throw new Error(`${args.join(" ")}: ${r.err}`);
  }
  return state;
}

/** A namespace with SRC on a veth end, ready for an agent routing 10.92.0.0/24 into its device. */
export async function policyLab(prefix: string): Promise<{ lab: NetnsLab; ns: string }> {
  const lab = new NetnsLab(prefix);
  await sweep(prefix);
  const ns = lab.addNamespace("ns");
  lab.addVeth({ ns, name: "obsrc0" }, { ns, name: "obsrc1" });
  lab.addAddress(ns, "obsrc0", `${SRC}/24`);
  lab.linkUp(ns, "obsrc0");
  lab.linkUp(ns, "obsrc1");
  return { lab, ns };
}

/** Sends `count` UDP datagrams from SRC to DST:port inside `ns`; resolves once they are sent. */
export function sendUdp(ns: string, port: number, count: number, sport = 0): void {
  const script = `const s=require("node:dgram").createSocket("udp4");s.bind(${sport},"${SRC}",async()=>{for(let i=0;i<${count};i++)await new Promise((r)=>s.send(Buffer.from("membrane-ob"),${port},"${DST}",r));s.close();});`;
  execFileSync("ip", ["netns", "exec", ns, process.execPath, "-e", script], { stdio: "pipe" });
}


/** Starts `membrane agent` on the state file in `ns`, routing 10.92.0.0/24 into device obm0; resolves once it forwards. */
export async function startPolicyAgent(lab: NetnsLab, ns: string, dir: string, state: string, extra: string[] = []): Promise<NetnsProcess> {
  const agent = lab.spawn(ns, [process.execPath, CLI, "agent", "--datapath", "tun", "--device", "obm0", "--state-dir", join(dir, "state"), "--config", state, "--route", "10.92.0.0/24", ...extra], { label: "agent" });
  await agent.waitLine("forwarding", (l) => typeof l === "string" && l.startsWith("membrane agent: forwarding on "), 30_000);
  return agent;
}
