// The pin directory on bpffs: where it is (MEMBRANE_BPFFS), how we tell a
// path is on bpffs (/proc/self/mounts), and mounting bpffs when it is missing,
// exercised on a private mount point under /tmp so the machine's /sys/fs/bpf
// is left alone.
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { MembraneError } from "../../host/errors.js";
import {
  DEFAULT_PIN_DIR,
  ensurePinDir,
  isOnBpffs,
  mountBpffs,
  mountOf,
  parseMounts,
  pinDir,
} from "../../host/bpf/bpffs.js";
import { libc, MNT_DETACH } from "../../host/sys/libc.js";
import { describeIf, missingLibbpf } from "./kernel-env.js";

const MOUNTS = [
  "sysfs /sys sysfs rw,nosuid 0 0",
  "bpf /sys/fs/bpf bpf rw,relatime,mode=700 0 0",
  "tmpfs /sys/fs/bpf/over\\040here tmpfs rw 0 0",
  "/dev/sda1 / ext4 rw 0 0",
  "",
].join("\n");

describe("pinDir", () => {
  const saved = process.env.MEMBRANE_BPFFS;
  afterEach(() => {
    if (saved === undefined) delete process.env.MEMBRANE_BPFFS;
    else process.env.MEMBRANE_BPFFS = saved;
  });

  it("defaults to /sys/fs/bpf/membrane and follows MEMBRANE_BPFFS", () => {
    delete process.env.MEMBRANE_BPFFS;
    expect(pinDir()).toBe(DEFAULT_PIN_DIR);
    expect(DEFAULT_PIN_DIR).toBe("/sys/fs/bpf/membrane");
    process.env.MEMBRANE_BPFFS = "/sys/fs/bpf/test/../other";
    expect(pinDir()).toBe("/sys/fs/bpf/other");
    process.env.MEMBRANE_BPFFS = "relative/dir";
    expect(() => pinDir()).toThrow(/MEMBRANE_BPFFS must be an absolute path/);
  });
});

describe("parseMounts / mountOf", () => {
  const mounts = parseMounts(MOUNTS);

  it("parses entries and decodes octal escapes", () => {
    expect(mounts).toHaveLength(4);
    expect(mounts[2]).toEqual({ source: "tmpfs", target: "/sys/fs/bpf/over here", fstype: "tmpfs" });
  });

  it("finds the deepest mount holding a path, including paths that do not exist yet", () => {
    expect(mountOf("/sys/fs/bpf/membrane/ct4", mounts)?.fstype).toBe("bpf");
    expect(mountOf("/sys/fs/bpf", mounts)?.fstype).toBe("bpf");
    expect(mountOf("/sys/fs/bpfx", mounts)?.fstype).toBe("sysfs");
    expect(mountOf("/sys/fs/bpf/over here/x", mounts)?.fstype).toBe("tmpfs");
    expect(mountOf("/home/user", mounts)?.fstype).toBe("ext4");
  });
});

describeIf("mounting bpffs", process.getuid?.() !== 0 ? "not running as root (mount needs CAP_SYS_ADMIN)" : missingLibbpf(), () => {
  let base: string;
  let root: string;

  beforeAll(() => {
    base = mkdtempSync(join(tmpdir(), "membrane-bpffs-"));
    root = join(base, "bpf");
  });

  afterAll(() => {
    if (!base) return;
    libc().umount2(root, MNT_DETACH); // fails harmlessly if the mount test did not get that far
    rmSync(base, { recursive: true, force: true });
  });

  it("refuses a directory that is neither on bpffs nor under the bpffs root", () => {
    let err: unknown;
    try {
      ensurePinDir(join(base, "elsewhere"), root);
    } catch (e) {
      err = e;
    }
    expect((err as MembraneError).code).toBe("BPFFS");
    expect((err as Error).message).toMatch(/elsewhere is not on a bpf filesystem/);
    expect(existsSync(join(base, "elsewhere"))).toBe(false);
  });

  it("says the root is missing instead of mounting over nothing", () => {
    expect(() => ensurePinDir(join(root, "membrane"), root)).toThrow(/bpf does not exist/);
  });

  it("mounts bpffs at the root when missing, then creates the pin directory", () => {
    mkdirSync(root); // an empty mount point, as /sys/fs/bpf is before mounting
    expect(isOnBpffs(root)).toBe(false);
    const dir = ensurePinDir(join(root, "membrane", "sub"), root);
    expect(dir).toBe(join(root, "membrane", "sub"));
    expect(isOnBpffs(dir)).toBe(true);
    expect(statSync(dir).isDirectory()).toBe(true);
    // Already mounted: a second call only makes sure the directory exists.
    expect(ensurePinDir(join(root, "membrane", "sub"), root)).toBe(dir);
  });

  it("reports mount failures with the errno name", () => {
    expect(() => mountBpffs(join(base, "no", "such", "dir"))).toThrow(/mount bpffs at .*: ENOENT/);
  });
});
