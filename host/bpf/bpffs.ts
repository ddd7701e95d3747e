/**
 * membrane's directory on the BPF filesystem, where maps are pinned so they
 * outlive the process that created them (conntrack survives an agent
 * restart) and other tools (the CLI, bpftool) can open them.
 *
 * Default /sys/fs/bpf/membrane; MEMBRANE_BPFFS overrides it (tests use a
 * private directory). Many machines mount bpffs at boot; some (containers,
 * minimal images) do not, so we mount it at /sys/fs/bpf when needed.
 */
import { existsSync, mkdirSync, readFileSync, realpathSync } from "node:fs";
import { basename, dirname, join, resolve, sep } from "node:path";
import { InvalidInputError, MembraneError } from "../errors.js";
import { describeErrno } from "./libbpf.js";
import { libc } from "../sys/libc.js";

export const BPFFS_ROOT = "/sys/fs/bpf";
export const DEFAULT_PIN_DIR = `${BPFFS_ROOT}/membrane`;

/** The pin directory: $MEMBRANE_BPFFS if set, else /sys/fs/bpf/membrane. */
export function pinDir(): string {
  const env = process.env.MEMBRANE_BPFFS;
  if (env === undefined || env === "") return DEFAULT_PIN_DIR;
  if (!env.startsWith("/")) {
    throw new InvalidInputError(`MEMBRANE_BPFFS must be an absolute path, got ${JSON.stringify(env)}`);
  }
  return resolve(env);
}

export interface MountEntry {
  source: string;
  target: string;
  fstype: string;
}

/** Parses /proc/self/mounts (octal escapes like \040 for spaces are decoded). */
export function parseMounts(text: string): MountEntry[] {
  const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  const entries: MountEntry[] = [];
  for (const line of text.split("\n")) {
    const f = line.split(" ");
    if (f.length < 3) continue;
    entries.push({ source: unescape(f[0]!), target: unescape(f[1]!), fstype: f[2]! });
  }
  return entries;
}

/**
 * The mount that holds `path` (which need not exist yet): the last-mounted
 * entry with the longest target that is a prefix of the path.
 */
export function mountOf(path: string, mounts: readonly MountEntry[]): MountEntry | undefined {
  let best: MountEntry | undefined;
  for (const m of mounts) {
    const inside = m.target === "/" || path === m.target || path.startsWith(m.target + sep);
    if (inside && (!best || m.target.length >= best.target.length)) best = m;
  }
  return best;
}

/** `path` with symlinks resolved as far as it exists. */
function canonical(path: string): string {
  let head = resolve(path);
  const tail: string[] = [];
  while (!existsSync(head)) {
    tail.unshift(basename(head));
    const up = dirname(head);
    if (up === head) break;
    head = up;
  }
  return join(realpathSync(head), ...tail);
}

function currentMounts(): MountEntry[] {
  return parseMounts(readFileSync("/proc/self/mounts", "utf8"));
}

/** Whether `path` is (or would be created) on a bpf filesystem. */
export function isOnBpffs(path: string): boolean {
  return mountOf(canonical(path), currentMounts())?.fstype === "bpf";
}

/** mount -t bpf bpf <target>. Needs CAP_SYS_ADMIN. */
export function mountBpffs(target: string = BPFFS_ROOT): void {
  const c = libc();
  if (c.mount("bpf", target, "bpf", 0, "mode=0700") !== 0) {
    const err = c.errno();
    const hint =
      err === 1 || err === 13
        ? ": run as root (mounting needs CAP_SYS_ADMIN), or mount it once at boot: mount -t bpf bpf /sys/fs/bpf"
        : "";
    throw new MembraneError("BPFFS", `mount bpffs at ${target}: ${describeErrno(err)}${hint}`);
  }
}

/**
 * Makes sure `dir` exists on a bpf filesystem and returns its canonical path:
 * mounts bpffs at `root` (/sys/fs/bpf) if `dir` lies under it and nothing is
 * mounted there, then creates the directory. A directory elsewhere that is not
 * on bpffs is an error: we do not mount over arbitrary paths.
 */
export function ensurePinDir(dir: string = pinDir(), root: string = BPFFS_ROOT): string {
  if (!dir.startsWith("/")) throw new InvalidInputError(`pin directory must be an absolute path, got ${JSON.stringify(dir)}`);
  const path = canonical(dir);
  if (!isOnBpffs(path)) {
    const rootPath = canonical(root);
    const underRoot = path === rootPath || path.startsWith(rootPath + sep);
    if (!underRoot) {
      throw new MembraneError(
        "BPFFS",
        `${path} is not on a bpf filesystem: use a directory under ${rootPath} (MEMBRANE_BPFFS), ` +
          `or mount one there first (mount -t bpf bpf <dir>)`,
      );
    }
    if (!existsSync(rootPath)) {
      throw new MembraneError(
        "BPFFS",
        `${rootPath} does not exist: the kernel lacks the BPF filesystem (CONFIG_BPF_SYSCALL) or /sys is not mounted`,
      );
    }
    mountBpffs(rootPath);
  }
  try {
    mkdirSync(path, { recursive: true, mode: 0o700 });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const hint = code === "EACCES" || code === "EPERM" ? ": run as root" : "";
    throw new MembraneError("BPFFS", `create pin directory ${path}: ${(err as Error).message}${hint}`, { cause: err });
  }
  return path;
}
