/**
 * `npm run build:native`: compiles native/esp_gcm.c (batch ESP seal/open over
 * libcrypto, sendmmsg/recvmmsg) into build/native/libesp_gcm.so, which
 * host/sys/esp-native.ts loads through koffi. Without a C compiler or the
 * OpenSSL headers it says what to install and exits 0: the ESP path then runs
 * on node:crypto (slower, same bytes). In CI a failed build is an error, since
 * .ci/run installs what it needs.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { packageRoot } from "../package-root.js";
import { NATIVE_LIBRARY, nativeLibraryPath } from "../sys/esp-native.js";


/** cc flags: a position-independent shared object linked against libcrypto. */
export function ccArgs(source: string, output: string): string[] {
  return ["-O2", "-Wall", "-Werror", "-shared", "-fPIC", "-o", output, source, "-lcrypto"];
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
  if (!cc) return fail("build:native: no C compiler, the ESP path will use node:crypto (Debian: apt-get install gcc libssl-dev)");
  if (!existsSync("/usr/include/openssl/evp.h")) {
    return fail("build:native: OpenSSL headers missing, the ESP path will use node:crypto (Debian: apt-get install libssl-dev)");
  }
  mkdirSync(join(root, "build/native"), { recursive: true });
  const out = nativeLibraryPath();
  const r = spawnSync(cc, ccArgs(join(root, "native/esp_gcm.c"), out), { stdio: "inherit" });
  if (r.status !== 0) return fail(`build:native: ${cc} failed (exit ${r.status}), the ESP path will use node:crypto`);
  console.log(`build:native: ${NATIVE_LIBRARY}`);
}

if (import.meta.url === `file://${process.argv[1]}`) main();
