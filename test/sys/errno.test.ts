// errno names (host/sys/errno.ts): libc, kernel-internal and libbpf codes.
import { describe, expect, it } from "vitest";
import { errnoName, errnoNumber } from "../../host/sys/errno.js";

describe("errnoName", () => {
  it("names libc, kernel-internal and libbpf codes, either sign", () => {
    expect(errnoName(-2)).toBe("ENOENT");
    expect(errnoName(1)).toBe("EPERM");
    expect(errnoName(-95)).toBe("EOPNOTSUPP");
    expect(errnoName(11)).toBe("EAGAIN");
    expect(errnoName(-524)).toBe("ENOTSUPP");
    expect(errnoName(-4007)).toBe("LIBBPF_ERRNO__VERIFY");
    expect(errnoName(99999)).toBe("errno 99999");
    expect(errnoNumber("E2BIG")).toBe(7);
  });
});
