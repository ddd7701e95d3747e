// The kernel numbers host/tun hard-codes, checked against the installed
// headers: a tiny C program (fixtures/tun-abi.c) prints them and this test
// compares. A wrong ioctl number would otherwise be a confusing EINVAL/ENOTTY
// at best and a different ioctl at worst. Needs cc and kernel headers, not root.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { VIRTIO_NET_HDR_LEN } from "../../host/tun/device.js";
import * as abi from "../../host/tun/tun-abi.js";
import * as vnet from "../../host/tun/virtio-net-hdr.js";
import { describeIf, missingCc } from "./env.js";

describeIf("TUN kernel ABI mirrored by host/tun", missingCc(), () => {
  let dir: string;
  let printed: Record<string, number>;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "membrane-tun-abi-"));
    const exe = join(dir, "tun-abi");
    execFileSync("cc", ["-Wall", "-Werror", "-o", exe, join(import.meta.dirname, "fixtures/tun-abi.c")], { stdio: "pipe" });
    printed = JSON.parse(execFileSync(exe, { encoding: "utf8" })) as Record<string, number>;
  });

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const names = [
    "TUNSETIFF",
    "TUNGETFEATURES",
    "TUNSETOFFLOAD",
    "TUNSETVNETHDRSZ",
    "TUNSETSTEERINGEBPF",
    "SIOCGIFFLAGS",
    "SIOCSIFFLAGS",
    "SIOCGIFMTU",
    "SIOCSIFMTU",
    "IFF_TUN",
    "IFF_NO_PI",
    "IFF_VNET_HDR",
    "IFF_MULTI_QUEUE",
    "IFF_UP",
    "TUN_F_CSUM",
    "TUN_F_TSO4",
    "TUN_F_TSO6",
    "IFNAMSIZ",
    "IFREQ_SIZE",
    "IFREQ_FLAGS_OFFSET",
    "IFREQ_MTU_OFFSET",
    "O_RDWR",
    "O_NONBLOCK",
    "O_CLOEXEC",
    "AF_INET",
    "SOCK_DGRAM",
    "SOCK_CLOEXEC",
    "POLLIN",
    "POLLERR",
    "POLLHUP",
    "POLLNVAL",
    "POLLFD_SIZE",
  ] as const;

  it.each(names)("%s matches the headers", (name) => {
    expect(abi[name], name).toBe(printed[name]);
  });

  it("TUN_F_USO4/6 match the headers where the headers have them (Linux >= 6.2)", () => {
    if (printed.TUN_F_USO4 === undefined) {
      console.warn("installed <linux/if_tun.h> predates USO (Linux 6.2): TUN_F_USO4/6 checked against upstream values only");
      expect([abi.TUN_F_USO4, abi.TUN_F_USO6]).toEqual([0x20, 0x40]);
      return;
    }
    expect([abi.TUN_F_USO4, abi.TUN_F_USO6]).toEqual([printed.TUN_F_USO4, printed.TUN_F_USO6]);
  });

  it("struct virtio_net_hdr size, field offsets and constants match", () => {
    expect(VIRTIO_NET_HDR_LEN).toBe(printed.VIRTIO_NET_HDR_LEN);
    // decodeVirtioNetHdr reads flags@0 gso_type@1 hdr_len@2 gso_size@4 csum_start@6 csum_offset@8.
    expect([
      printed["vnet.flags"],
      printed["vnet.gso_type"],
      printed["vnet.hdr_len"],
      printed["vnet.gso_size"],
      printed["vnet.csum_start"],
      printed["vnet.csum_offset"],
    ]).toEqual([0, 1, 2, 4, 6, 8]);
    const consts = [
      "VIRTIO_NET_HDR_F_NEEDS_CSUM",
      "VIRTIO_NET_HDR_F_DATA_VALID",
      "VIRTIO_NET_HDR_GSO_NONE",
      "VIRTIO_NET_HDR_GSO_TCPV4",
      "VIRTIO_NET_HDR_GSO_UDP",
      "VIRTIO_NET_HDR_GSO_TCPV6",
      "VIRTIO_NET_HDR_GSO_ECN",
    ] as const;
    for (const c of consts) expect(vnet[c], c).toBe(printed[c]);
    expect(vnet.VIRTIO_NET_HDR_GSO_UDP_L4).toBe(printed.VIRTIO_NET_HDR_GSO_UDP_L4 ?? 5);
  });
});
