// XFRM over netlink: the codec's layouts match the kernel header (offsetof),
// its messages equal iproute2's own for the same states and policies byte for
// byte (captured with strace), policies install for real in a namespace and
// read back, and a kernel without ESP is reported as NotSupported with the
// kernel's own extended-ack message.
import { execFileSync, spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { XFRM_LAYOUT, encodePolicy, encodePolicyId, encodeSa, encodeSaId, type PolicySpec, type SaSpec } from "../../host/encrypt/xfrm-codec.js";
import { INPUT_MARK, Xfrm, outputMark, probeKernelEsp } from "../../host/encrypt/xfrm.js";
import { withNetns } from "../../host/sys/netns/enter.js";
import { describeIf } from "../support/describe-if.js";
import { testTempDir } from "../support/temp-dir.js";

const KEY = Buffer.from("0123456789abcdef0123456789abcdefcafebabe", "hex");
const NS = `mbr-xfrm-${process.pid}`;

function missing(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root (network namespaces, netlink XFRM)";
  for (const tool of ["ip", "strace", "cc"]) if (spawnSync(tool, ["-V"]).error && spawnSync(tool, ["--version"]).error) return `${tool} is not installed`;
  return undefined;
}

/** The netlink payload (after the 16-byte header) of the one sendmsg an `ip xfrm ...` command makes. */
function iproute2Payload(args: string[]): Buffer {
  const r = spawnSync("ip", ["netns", "exec", NS, "strace", "-f", "-s", "65535", "-xx", "-e", "trace=sendmsg", "ip", "xfrm", ...args], { encoding: "utf8" });
  const line = r.stderr.split("\n").find((l) => l.startsWith("sendmsg(") && l.includes("XFRM_MSG_"));
  if (!line) throw new Error(`no XFRM sendmsg in strace output of ip xfrm ${args.join(" ")}:\n${r.stderr}`);
  const hex = /\}, "((?:\\x[0-9a-f]{2})+)"\]/.exec(line);
  if (!hex) throw new Error(`cannot read the payload from: ${line.slice(0, 300)}`);
  return Buffer.from(hex[1]!.replace(/\\x/g, ""), "hex");
}

describeIf("XFRM codec against the kernel and iproute2", missing(), () => {
  beforeAll(() => {
    execFileSync("ip", ["netns", "add", NS]);
  });
  afterAll(() => {
    spawnSync("ip", ["netns", "del", NS]);
  });

  it("struct layouts match linux/xfrm.h", () => {
    const dir = testTempDir("mbr-xfrm-layout-");
    writeFileSync(
      join(dir, "l.c"),
      `#include <stdio.h>\n#include <linux/xfrm.h>\nint main(void){printf("%zu %zu %zu %zu %zu %zu", sizeof(struct xfrm_selector), sizeof(struct xfrm_usersa_info), sizeof(struct xfrm_usersa_id), sizeof(struct xfrm_userpolicy_info), sizeof(struct xfrm_userpolicy_id), sizeof(struct xfrm_user_tmpl));return 0;}\n`,
    );
    execFileSync("cc", ["-o", join(dir, "l"), join(dir, "l.c")]);
    const sizes = execFileSync(join(dir, "l"), { encoding: "utf8" }).split(" ").map(Number);
    const L = XFRM_LAYOUT;
    expect(sizes).toEqual([L.SELECTOR_SIZE, L.USERSA_INFO_SIZE, L.USERSA_ID_SIZE, L.USERPOLICY_INFO_SIZE, L.USERPOLICY_ID_SIZE, L.USER_TMPL_SIZE]);
  });

  const sa: SaSpec = {
    src: "10.0.0.1", dst: "10.0.0.2", spi: 3, reqid: 1, mode: "tunnel",
    aead: { name: "rfc4106(gcm(aes))", key: KEY, icvBits: 128 }, mark: outputMark(3),
  };
  const policy: PolicySpec = {
    selector: { src: "10.1.0.0/16", dst: "10.2.0.0/16" }, dir: "out", mark: outputMark(3),
    templates: [{ src: "10.0.0.1", dst: "10.0.0.2", reqid: 1, mode: "tunnel" }],
  };

  it("NEWSA equals ip xfrm state add, byte for byte (IPv4 and IPv6)", () => {
    expect(outputMark(3)).toEqual({ value: 0x3e00, mask: 0xff00 });
    const ip4 = iproute2Payload(["state", "add", "src", "10.0.0.1", "dst", "10.0.0.2", "proto", "esp", "spi", "0x3", "reqid", "1", "mode", "tunnel",
      "aead", "rfc4106(gcm(aes))", `0x${KEY.toString("hex")}`, "128", "mark", "0x3e00", "mask", "0xff00", "sel", "src", "0.0.0.0/0", "dst", "0.0.0.0/0"]);
    expect(Buffer.from(encodeSa(sa)).toString("hex")).toBe(ip4.toString("hex"));
    const ip6 = iproute2Payload(["state", "add", "src", "fd00::1", "dst", "fd00::2", "proto", "esp", "spi", "0x5", "reqid", "2", "mode", "tunnel",
      "aead", "rfc4106(gcm(aes))", `0x${KEY.toString("hex")}`, "96", "sel", "src", "::/0", "dst", "::/0"]);
    const sa6: SaSpec = { src: "fd00::1", dst: "fd00::2", spi: 5, reqid: 2, mode: "tunnel", aead: { name: "rfc4106(gcm(aes))", key: KEY, icvBits: 96 } };
    expect(Buffer.from(encodeSa(sa6)).toString("hex")).toBe(ip6.toString("hex"));
  });

  it("DELSA, NEWPOLICY and DELPOLICY equal iproute2's", () => {
    const del = iproute2Payload(["state", "delete", "src", "10.0.0.1", "dst", "10.0.0.2", "proto", "esp", "spi", "0x3", "mark", "0x3e00", "mask", "0xff00"]);
    expect(Buffer.from(encodeSaId({ dst: "10.0.0.2", spi: 3, src: "10.0.0.1", mark: outputMark(3) })).toString("hex")).toBe(del.toString("hex"));
    const add = iproute2Payload(["policy", "add", "dir", "out", "src", "10.1.0.0/16", "dst", "10.2.0.0/16", "mark", "0x3e00", "mask", "0xff00",
      "tmpl", "src", "10.0.0.1", "dst", "10.0.0.2", "proto", "esp", "reqid", "1", "mode", "tunnel"]);
    expect(Buffer.from(encodePolicy(policy)).toString("hex")).toBe(add.toString("hex"));
    const delp = iproute2Payload(["policy", "delete", "dir", "out", "src", "10.1.0.0/16", "dst", "10.2.0.0/16", "mark", "0x3e00", "mask", "0xff00"]);
    expect(Buffer.from(encodePolicyId({ selector: policy.selector, dir: "out", mark: outputMark(3) })).toString("hex")).toBe(delp.toString("hex"));
  });

  it("policies install for real in a namespace, read back, and are deleted", () => {
    const input: PolicySpec = { ...policy, dir: "in", selector: { src: "10.2.0.0/16", dst: "10.1.0.0/16" }, mark: INPUT_MARK,
      templates: [{ src: "10.0.0.2", dst: "10.0.0.1", reqid: 1, mode: "tunnel" }] };
    withNetns(NS, () => {
      const x = Xfrm.open();
      try {
        x.upsertPolicy(policy);
        x.upsertPolicy(input);
        x.upsertPolicy({ ...policy, priority: 7 }); // an update replaces, it does not add
        const got = x.listPolicies().sort((a, b) => a.dir.localeCompare(b.dir));
        expect(got).toEqual([
          { selector: input.selector, dir: "in", priority: 0, mark: INPUT_MARK, templates: [{ ...input.templates[0], spi: 0 }] },
          { selector: policy.selector, dir: "out", priority: 7, mark: outputMark(3), templates: [{ ...policy.templates[0], spi: 0 }] },
        ]);
      } finally {
        x.close();
      }
    });
    const shown = execFileSync("ip", ["netns", "exec", NS, "ip", "xfrm", "policy"], { encoding: "utf8" });
    expect(shown).toMatch(/src 10\.1\.0\.0\/16 dst 10\.2\.0\.0\/16\s+dir out priority 7[\s\S]*mark 0x3e00\/0xff00[\s\S]*tmpl src 10\.0\.0\.1 dst 10\.0\.0\.2\s+proto esp reqid 1 mode tunnel/);
    expect(shown).toMatch(/dir in priority 0[\s\S]*mark 0xd00\/0xf00/);
    withNetns(NS, () => {
      const x = Xfrm.open();
      try {
        x.deletePolicy({ selector: policy.selector, dir: "out", mark: outputMark(3) });
        expect(x.listPolicies().map((p) => p.dir)).toEqual(["in"]);
        expect(() => x.deletePolicy({ selector: policy.selector, dir: "out", mark: outputMark(3) })).toThrow(/delete xfrm policy out 10\.1\.0\.0\/16 -> 10\.2\.0\.0\/16: ENOENT/);
      } finally {
        x.close();
      }
    });
  });

  it("a kernel without ESP says so, with the missing options and the kernel's message", () => {
    const reason = probeKernelEsp();
    const hasEsp = spawnSync("sh", ["-c", "grep -qw esp4 /proc/modules || test -d /sys/module/esp4"]).status === 0;
    if (hasEsp) {
      expect(reason).toBeUndefined();
    } else {
      expect(reason).toMatch(/kernel lacks ESP with AES-GCM \(CONFIG_INET_ESP, CONFIG_CRYPTO_GCM/);
      expect(reason).toMatch(/kernel: Requested AEAD algorithm not found/);
    }
  });
});
