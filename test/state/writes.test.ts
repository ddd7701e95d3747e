// Commands that write the state file leave it loadable or leave it as it was: the result is validated as a load
// validates it (sizes included), an existing endpoint is not replaced unasked, and the file is private and
// written atomically (0600, a missing directory created 0700, a symlink planted at a temporary name not followed).
import { lstatSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { cli } from "../support/run-cli.js";

const dir = mkdtempSync(join(tmpdir(), "membrane-state-writes-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
const fresh = (content?: unknown) => {
  const p = join(dir, `state-${n++}.json`);
  if (content !== undefined) writeFileSync(p, JSON.stringify(content));
  return p;
};

const cidrPolicy = (name: string, cidrs: string[]) => ({
  apiVersion: "cilium.io/v2", kind: "CiliumNetworkPolicy", metadata: { name },
  spec: { endpointSelector: { matchLabels: { app: "web" } }, egress: [{ toCIDR: cidrs }] },
});

describe("writes leave the state file loadable", () => {
  // issue 19 #3: the import was written, and the next replay or agent start refused the file.
  test("policy import of a CIDR policy that overflows policy.ipcache is refused and nothing is written", async () => {
    const state = fresh({ policy: { ipcache: 4 } });
    expect((await cli("endpoint", "add", "1", "--labels", "app=web", "--ipv4", "10.0.0.1", "--config", state)).code).toBe(0);
    const before = readFileSync(state, "utf8");
    const policy = join(dir, "many-cidrs.json");
    writeFileSync(policy, JSON.stringify(cidrPolicy("wide", ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "100.64.0.0/10"])));
    const r = await cli("policy", "import", policy, "--config", state);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`state file ${state}: ipcache4 entries: 5 do not fit the wasm datapath's ipcache4 table (4 entries; raise policy.ipcache)`);
    expect(readFileSync(state, "utf8")).toBe(before);
    // the file still loads, and one that fits is taken
    expect((await cli("endpoint", "list", "--config", state)).code).toBe(0);
    writeFileSync(policy, JSON.stringify(cidrPolicy("narrow", ["192.0.2.0/24"])));
    expect((await cli("policy", "import", policy, "--config", state)).code).toBe(0);
    expect((await cli("replay", join(import.meta.dirname, "../../examples/sample.pcap"), "--config", state, "--gc", "off")).code).toBe(0);
  });

  // issue 19 #4: the second add silently replaced endpoint 1 (its labels, addresses and identity).
  test("endpoint add on an existing id is refused, naming the endpoint; --replace replaces it", async () => {
    const state = fresh();
    expect((await cli("endpoint", "add", "1", "--labels", "app=web", "--ipv4", "10.0.0.1", "--config", state)).code).toBe(0);
    const before = readFileSync(state, "utf8");
    const r = await cli("endpoint", "add", "1", "--labels", "app=db", "--ipv4", "10.0.0.9", "--config", state);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`endpoint 1 exists already in ${state} (labels k8s:app=web,k8s:io.kubernetes.pod.namespace=default, ipv4 10.0.0.1): delete it first, or add --replace`);
    expect(readFileSync(state, "utf8")).toBe(before);
    expect((await cli("endpoint", "add", "1", "--labels", "app=db", "--ipv4", "10.0.0.9", "--replace", "--config", state)).code).toBe(0);
    const saved = JSON.parse(readFileSync(state, "utf8"));
    expect(saved.endpoints.map((e: { id: number; ipv4: string; labels: string[] }) => [e.id, e.ipv4, e.labels.includes("k8s:app=db")])).toEqual([[1, "10.0.0.9", true]]);
  });

  test("a state file that does not load is not written to, and says why", async () => {
    const state = fresh({ conntrak: {} });
    const before = readFileSync(state, "utf8");
    const r = await cli("endpoint", "add", "1", "--labels", "app=web", "--config", state);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`state file ${state}: conntrak: unknown key`);
    expect(readFileSync(state, "utf8")).toBe(before);
  });

  test("--ifindex that is not a number is named as given", async () => {
    const r = await cli("endpoint", "add", "1", "--labels", "app=web", "--ifindex", "abc", "--config", fresh());
    expect(r.code).toBe(2);
    expect(r.err).toContain('--ifindex: expected 1..2147483647 (an interface index), got "abc"');
  });
});

// issue 19 #13 (state file): files were 0644 under the umask, a missing directory was an ENOENT, and the
// temporary name (<file>.tmp-<pid>) was opened without O_EXCL, so a symlink planted there was written through.
describe("the state file is private and written atomically", () => {
  test("written 0600; a missing directory is created 0700", async () => {
    const state = join(dir, "new-dir", "sub", "state.json");
    expect((await cli("endpoint", "add", "1", "--labels", "app=web", "--config", state)).code).toBe(0);
    expect(statSync(state).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, "new-dir", "sub")).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, "new-dir")).mode & 0o777).toBe(0o700);
    const existing = fresh({ conntrack: { tcpEntries: 1024 } });
    expect(statSync(existing).mode & 0o777).not.toBe(0o600); // written here by the test, under the umask
    expect((await cli("endpoint", "add", "1", "--labels", "app=web", "--config", existing)).code).toBe(0);
    expect(statSync(existing).mode & 0o777).toBe(0o600);
  });

  test("a symlink planted at the temporary name is not followed", async () => {
    const state = fresh({ conntrack: { tcpEntries: 1024 } });
    const victim = join(dir, "victim.txt");
    writeFileSync(victim, "precious\n");
    symlinkSync(victim, `${state}.tmp-${process.pid}`);
    expect((await cli("endpoint", "add", "1", "--labels", "app=web", "--config", state)).code).toBe(0);
    expect(readFileSync(victim, "utf8")).toBe("precious\n");
    expect(lstatSync(state).isFile()).toBe(true);
    expect(JSON.parse(readFileSync(state, "utf8")).endpoints).toHaveLength(1);
  });

  test("a symlink planted at the lock file's name is refused, not followed", async () => {
    const state = fresh({ conntrack: { tcpEntries: 1024 } });
    const before = readFileSync(state, "utf8");
    const victim = join(dir, "victim-lock.txt");
    writeFileSync(victim, "precious\n");
    symlinkSync(victim, `${state}.lock`);
    const r = await cli("endpoint", "add", "1", "--labels", "app=web", "--config", state);
    expect(r.code).not.toBe(0);
    expect(r.err).toContain(`lock state file ${state}: open ${state}.lock`);
    expect(readFileSync(victim, "utf8")).toBe("precious\n");
    expect(readFileSync(state, "utf8")).toBe(before);
  });
});
