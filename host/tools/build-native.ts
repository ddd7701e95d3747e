/**
 * `npm run build:native`: compiles the optional native libraries koffi loads:
 * - native/tun_io.c (batched TUN read/write, io_uring) and
 *   native/tun_gso_write.c (offload passthrough's coalescing write) into
 *   build/native/libtun_io.so (host/sys/tun-native.ts); needs only a C
 *   compiler and the kernel headers;
 * - native/esp_gcm.c (batch ESP seal/open over libcrypto, sendmmsg/recvmmsg)
 *   into build/native/libesp_gcm.so (host/sys/esp-native.ts); needs the
 *   OpenSSL headers too.
 * A library that cannot be built is reported with what to install, and the
 * build exits 0: TUN I/O then makes one FFI call per packet, the ESP path
 * runs on node:crypto (slower, same bytes). In CI a failed build is an error,
 * since .ci/run installs what it needs.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { packageRoot } from "../package-root.js";
import { NATIVE_LIBRARY, nativeLibraryPath } from "../sys/esp-native.js";
import { TUN_NATIVE_LIBRARY, tunNativeLibraryPath } from "../sys/tun-native.js";


/** cc flags: a position-independent shared object (linked against `libs`, e.g. "-lcrypto"). */
export function ccArgs(sources: string | string[], output: string, libs: string[] = ["-lcrypto"]): string[] {
  return ["-O2", "-Wall", "-Werror", "-shared", "-fPIC", "-o", output, ...[sources].flat(), ...libs];
}

function compiler(): string | undefined {
  for (const cc of [process.env.CC, "cc", "gcc", "clang"]) {
    if (cc && spawnSync(cc, ["--version"], { stdio: "ignore" }).status === 0) return cc;
  }
  return undefined;
}

function main(): void {
  const root = packageRoot();
  const fail = (msg: string): void => {
    if (process.env.CI === "true") {
      console.error(msg);
      process.exit(1);
    }
    console.warn(msg);
  };
  const cc = compiler();
  if (!cc) return fail("build:native: no C compiler: TUN I/O will make one FFI call per packet and the ESP path will use node:crypto (Debian: apt-get install gcc libssl-dev)");
  mkdirSync(join(root, "build/native"), { recursive: true });
  if (!existsSync("/usr/include/linux/io_uring.h")) {
    fail("build:native: kernel headers missing (linux/io_uring.h), TUN I/O will make one FFI call per packet (Debian: apt-get install linux-libc-dev)");
  } else {
    const t = spawnSync(cc, ccArgs([join(root, "native/tun_io.c"), join(root, "native/tun_gso_write.c")], tunNativeLibraryPath(), []), { stdio: "inherit" });
    if (t.status !== 0) fail(`build:native: ${cc} failed on native/tun_io.c or native/tun_gso_write.c (exit ${t.status}), TUN I/O will make one FFI call per packet`);
    else console.log(`build:native: ${TUN_NATIVE_LIBRARY}`);
  }
  if (!existsSync("/usr/include/openssl/evp.h")) {
    return fail("build:native: OpenSSL headers missing, the ESP path will use node:crypto (Debian: apt-get install libssl-dev)");
  }
  const out = nativeLibraryPath();
  const r = spawnSync(cc, ccArgs(join(root, "native/esp_gcm.c"), out), { stdio: "inherit" });
  if (r.status !== 0) return fail(`build:native: ${cc} failed (exit ${r.status}), the ESP path will use node:crypto`);
  console.log(`build:native: ${NATIVE_LIBRARY}`);
}

if (import.meta.url === `file://${process.argv[1]}`) main();
